"""LightGBM models (a ``Booster``, ``LGBMClassifier`` or ``LGBMRegressor``) in lockgate's tree engine.

LightGBM compares float64 features with float64 thresholds, ``x <= threshold``, which is why a
float32 engine (an ONNX graph) misroutes values on or next to a threshold. A missing value goes
by the node's missing type: ``NaN`` takes the default direction, ``Zero`` sends zeros (and NaN)
the default way, ``None`` reads NaN as 0. Leaves are added in float64, tree by tree; the
objective's transform is float64 too (``1 / (1 + exp(-sigmoid * x))``, a softmax). A feature
within 1e-35 of zero is read as zero, as LightGBM's dense-row reader drops it.

The trees come from ``Booster.dump_model()``: thresholds and leaf values are printed with 17
significant digits, so they parse back to the very doubles LightGBM holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lockgate.loader.trees.ensemble import EnsembleEngine, identity
from lockgate.loader.trees.table import EngineUnavailable, TableBuilder

# LightGBM's kZeroThreshold (1e-35f): reading a dense row, it keeps only values beyond it (or
# NaN), so anything within it of zero is compared as 0.0.
LIGHTGBM_ZERO = float(np.float32(1e-35))
_IDENTITY = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")


def _add_tree(builder: TableBuilder, structure: dict[str, Any]) -> None:
    builder.start_tree()
    # Depth-first, each node numbered as it is added; children's numbers are patched in after.
    stack: list[tuple[dict[str, Any], int, int | None, bool]] = [(structure, 0, None, False)]
    while stack:
        node, depth, parent, is_left = stack.pop()
        me = len(builder.feature)
        if parent is not None:
            (builder.left if is_left else builder.right)[parent] = me
        builder.note_depth(depth)
        if "leaf_value" in node:
            builder.add_leaf(float(node["leaf_value"]))
            continue
        if node.get("decision_type") != "<=":
            raise EngineUnavailable("the model has categorical splits; the tree engine serves numerical splits")
        threshold, default_left = float(node["threshold"]), bool(node["default_left"])
        missing = str(node.get("missing_type", "None"))
        # "None": NaN is read as 0 and compared; "Zero" and "NaN": it takes the default side.
        nan_left = default_left if missing in ("NaN", "Zero") else threshold >= 0.0
        builder.add_split(int(node["split_feature"]), threshold, -1, -1, nan_left, zero_missing=missing == "Zero")
        stack.append((node["right_child"], depth + 1, me, False))
        stack.append((node["left_child"], depth + 1, me, True))


def _objective(dump: dict[str, Any]) -> tuple[str, float]:
    words = str(dump.get("objective", "")).split()
    name = words[0] if words else ""
    sigmoid = 1.0
    for word in words[1:]:
        if word.startswith("sigmoid:"):
            sigmoid = float(word.split(":", 1)[1])
    return name, sigmoid


def build(booster: Any, *, classes: np.ndarray | None) -> EnsembleEngine:
    """``classes``: the sklearn classifier's ``classes_``, when the answer is
    ``LGBMClassifier.predict``'s labels; None answers as ``Booster.predict`` does."""
    dump = booster.dump_model()
    if dump.get("average_output"):
        raise EngineUnavailable("the model averages its trees (random forest mode)")
    name, sigmoid = _objective(dump)
    if name not in ("binary", "multiclass", *_IDENTITY):
        raise EngineUnavailable(f"objective {name or 'custom'} is not one the tree engine reproduces")
    if classes is not None and name not in ("binary", "multiclass"):
        raise EngineUnavailable(f"a classifier with objective {name}")
    groups = int(dump.get("num_tree_per_iteration", 1))
    trees = dump["tree_info"]
    best = int(getattr(booster, "best_iteration", 0) or 0)
    if best > 0:
        trees = trees[: best * groups]
    builder = TableBuilder()
    for tree in trees:
        if tree.get("is_linear"):
            raise EngineUnavailable("the model has linear trees")
        _add_tree(builder, tree["tree_structure"])
    table = builder.build(
        threshold_dtype=np.float64, leaf_dtype=np.float64, feature_dtype=np.float64, strict=False,
        zero_below=LIGHTGBM_ZERO,
    )  # fmt: skip
    finish = LightGBMFinish(name, sigmoid)
    if classes is not None:
        finish = LightGBMFinish(name, sigmoid, tuple(classes.tolist()), classes.dtype.str)
    return EnsembleEngine(table, groups, np.zeros(groups), finish, "lightgbm")


@dataclass(frozen=True)
class LightGBMFinish:
    """LightGBM's last step on the raw scores, as ``Booster.predict`` takes it, and the labels of
    ``LGBMClassifier.predict`` (``classes_[argmax]``) when ``classes`` is set. Data only, so a
    restart can rebuild it from the engine's record without the model."""

    objective: str
    sigmoid: float
    classes: tuple[Any, ...] | None = None
    classes_dtype: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"library": "lightgbm", **asdict(self), "classes": None if self.classes is None else list(self.classes)}

    def labels(self, probabilities: np.ndarray) -> np.ndarray:
        classes = np.array(self.classes, dtype=np.dtype(self.classes_dtype or "object"))
        return np.asarray(classes[np.argmax(probabilities, axis=1)])

    def __call__(self, margins: np.ndarray) -> np.ndarray:
        if self.objective == "binary":
            positive = 1.0 / (1.0 + np.exp(-self.sigmoid * margins[:, 0]))
            if self.classes is None:
                return positive
            return self.labels(np.vstack((1.0 - positive, positive)).transpose())
        if self.objective == "multiclass":
            exps = np.exp(margins - margins.max(axis=1, keepdims=True))
            probabilities = exps / np.add.accumulate(exps, axis=1)[:, -1:]
            return probabilities if self.classes is None else self.labels(probabilities)
        return identity(margins)
