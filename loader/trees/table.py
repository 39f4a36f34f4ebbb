"""A tree ensemble as flat arrays: what every library's trees become before lockgate runs them.

One entry per node, children as absolute node numbers, a leaf pointing to itself. What differs
between libraries is kept as data, not code, because exactness lives in those differences:

- ``feature_dtype``: the dtype a feature is cast to before it is compared (XGBoost and
  scikit-learn trees compare float32 features; LightGBM compares float64);
- ``strict``: ``x < threshold`` goes left (XGBoost) or ``x <= threshold`` does (LightGBM,
  scikit-learn);
- ``nan_left``: where a missing value goes, per node; ``zero_missing`` marks LightGBM's nodes that
  treat zero as missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class EngineUnavailable(Exception):
    """This model cannot be expressed in lockgate's tree engine (the reason names what is missing)."""


@dataclass(frozen=True)
class TreeTable:
    feature: np.ndarray  # int64, per node (leaves: 0, never read for the decision)
    threshold: np.ndarray  # per node, in the library's own threshold dtype (leaves: 0)
    left: np.ndarray  # int64 absolute node number; a leaf points to itself
    right: np.ndarray  # int64
    nan_left: np.ndarray  # bool, per node: a NaN feature goes left
    leaf_value: np.ndarray  # per node, in the dtype the library sums leaves in (internal: 0)
    roots: np.ndarray  # int64, per tree: its root's node number
    depth: int  # the deepest leaf's depth
    feature_dtype: type[np.floating]
    strict: bool
    zero_missing: np.ndarray | None = None  # bool per node (LightGBM "Zero" missing type), or None
    # Features within this of zero are read as 0.0 (LightGBM drops them from its sparse row).
    zero_below: float | None = None

    @property
    def trees(self) -> int:
        return len(self.roots)

    @property
    def nodes(self) -> int:
        return len(self.feature)


class TableBuilder:
    """Collects trees node by node into one ``TreeTable``."""

    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.nan_left: list[bool] = []
        self.zero_missing: list[bool] = []
        self.leaf_value: list[float] = []
        self.roots: list[int] = []
        self.depth = 0

    def start_tree(self) -> int:
        """The node number the next tree's root gets; its nodes are numbered from there."""
        self.roots.append(len(self.feature))
        return self.roots[-1]

    def add_split(
        self, feature: int, threshold: float, left: int, right: int, nan_left: bool, *, zero_missing: bool = False
    ) -> None:
        self.feature.append(feature)
        self.threshold.append(threshold)
        self.left.append(left)
        self.right.append(right)
        self.nan_left.append(nan_left)
        self.zero_missing.append(zero_missing)
        self.leaf_value.append(0.0)

    def add_leaf(self, value: float) -> None:
        me = len(self.feature)
        self.add_split(0, 0.0, me, me, True)
        self.leaf_value[-1] = value

    def note_depth(self, depth: int) -> None:
        self.depth = max(self.depth, depth)

    def build(
        self, *, threshold_dtype: type[np.floating], leaf_dtype: type[np.floating],
        feature_dtype: type[np.floating], strict: bool, zero_below: float | None = None,
    ) -> TreeTable:  # fmt: skip
        zero = np.array(self.zero_missing, dtype=bool)
        return TreeTable(
            feature=np.array(self.feature, dtype=np.int64),
            threshold=np.array(self.threshold, dtype=threshold_dtype),
            left=np.array(self.left, dtype=np.int64),
            right=np.array(self.right, dtype=np.int64),
            nan_left=np.array(self.nan_left, dtype=bool),
            leaf_value=np.array(self.leaf_value, dtype=leaf_dtype),
            roots=np.array(self.roots, dtype=np.int64),
            depth=self.depth,
            feature_dtype=feature_dtype,
            strict=strict,
            zero_missing=zero if zero.any() else None,
            zero_below=zero_below,
        )
