"""Training-baseline profiles: per feature, the bins live data is compared against.

- Numeric: decile edges of the training data, plus an underflow bin (below the training
  minimum), an overflow bin (above the maximum) and a missing bin (NaN). Repeated edges
  (discrete features) collapse, so a 0/1 feature has two bins, not ten.
- Categorical: the top-K training categories, plus ``__other__`` (seen in training, not in
  the top K) and ``__missing__``. Categories never seen in training are counted apart, as the
  unseen-category ratio.

Pure numpy; no pandas, no I/O. The loader reads the dataset and hands columns in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lockgate.monitoring.errors import ProfileError

TOP_K = 20
MAX_KNOWN_CATEGORIES = 10_000
# Relative to the edge, plus a floor for edges at zero: far above JSON rounding error (about
# 5e-11 at 10 decimals), far below any real distinction between feature values.
_EDGE_TOLERANCE_REL = 1e-7
_EDGE_TOLERANCE_ABS = 1e-9
OTHER = "__other__"
MISSING = "__missing__"


def edge_tolerance(edges: NDArray[np.float64]) -> NDArray[np.float64]:
    return _EDGE_TOLERANCE_ABS + _EDGE_TOLERANCE_REL * np.abs(edges)


@dataclass(frozen=True)
class NumericProfile:
    name: str
    edges: NDArray[np.float64]  # strictly increasing; bins are [e0,e1), ..., [e_{n-1}, e_n]
    baseline: NDArray[np.float64]  # proportions over: underflow, n interior bins, overflow, missing

    @property
    def bins(self) -> int:
        return len(self.baseline)

    def bin_of(self, values: NDArray[Any]) -> NDArray[np.intp]:
        """Bin index of each value: 0 underflow, 1..n interior, n+1 overflow, n+2 missing.

        Edges get a small tolerance: live values arrive through JSON, usually rounded (pandas
        writes 10 decimals), and a training value sitting exactly on a decile edge must not
        fall into the bin below once rounded. Without it, discrete-valued features show
        PSI > 1 on traffic drawn from the training set itself.
        """
        x = np.asarray(values, dtype=np.float64)
        n = len(self.edges) - 1
        tol = edge_tolerance(self.edges)
        idx = np.searchsorted(self.edges - tol, x, side="right")  # 0 below e0, n+1 above e_n
        # The training maximum (within tolerance) belongs to the last interior bin.
        idx = np.where((idx == n + 1) & (x <= self.edges[-1] + tol[-1]), n, idx)
        idx = np.where(np.isnan(x), n + 2, idx)
        return idx.astype(np.intp)

    def out_of_range_bins(self) -> tuple[int, int]:
        return 0, len(self.edges)

    @property
    def missing_bin(self) -> int:
        return self.bins - 1


@dataclass(frozen=True)
class CategoricalProfile:
    name: str
    categories: tuple[str, ...]  # the top K
    known: frozenset[str]  # every training category (bounded)
    baseline: NDArray[np.float64]  # proportions over: categories..., __other__, __missing__
    index: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def bins(self) -> int:
        return len(self.baseline)

    @property
    def missing_bin(self) -> int:
        return self.bins - 1

    @property
    def other_bin(self) -> int:
        return self.bins - 2

    def bin_of(self, values: NDArray[Any]) -> tuple[NDArray[np.intp], int]:
        """(bin index of each value, how many values were never seen in training)."""
        out = np.empty(len(values), dtype=np.intp)
        unseen = 0
        for i, value in enumerate(values):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out[i] = self.missing_bin
                continue
            text = str(value)
            position = self.index.get(text)
            if position is None:
                position = self.other_bin
                if text not in self.known:
                    unseen += 1
            out[i] = position
        return out, unseen


Profile = NumericProfile | CategoricalProfile


def _proportions(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    total = counts.sum()
    return counts / total if total else counts


def numeric_profile(name: str, values: NDArray[Any]) -> NumericProfile:
    x = np.asarray(values, dtype=np.float64)
    present = x[~np.isnan(x)]
    if present.size == 0:
        raise ProfileError(f"feature {name!r} has no non-missing training values")
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, 11)))
    if edges.size == 1:  # a constant feature: one bin holding that value
        edges = np.array([edges[0], edges[0]])
    profile = NumericProfile(name, edges, np.zeros(len(edges) + 2))
    counts = np.bincount(profile.bin_of(x), minlength=profile.bins).astype(np.float64)
    return NumericProfile(name, edges, _proportions(counts))


def categorical_profile(name: str, values: NDArray[Any], top_k: int = TOP_K) -> CategoricalProfile:
    texts = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    present = [t for t in texts if t is not None]
    if not present:
        raise ProfileError(f"feature {name!r} has no non-missing training values")
    uniques, counts = np.unique(np.array(present, dtype=object), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    top = tuple(str(uniques[i]) for i in order[:top_k])
    known = frozenset(str(u) for u in uniques[np.argsort(-counts, kind="stable")][:MAX_KNOWN_CATEGORIES])
    index = {c: i for i, c in enumerate(top)}
    shell = CategoricalProfile(name, top, known, np.zeros(len(top) + 2), index)
    bins, _ = shell.bin_of(np.array(texts, dtype=object))
    baseline = _proportions(np.bincount(bins, minlength=shell.bins).astype(np.float64))
    return CategoricalProfile(name, top, known, baseline, index)


def is_numeric(values: NDArray[Any]) -> bool:
    return np.asarray(values).dtype.kind in "biuf"


@dataclass(frozen=True)
class BaselineProfile:
    features: dict[str, Profile]
    rows: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.features)


def build_profile(columns: Mapping[str, NDArray[Any]], categorical: frozenset[str] = frozenset()) -> BaselineProfile:
    """A profile of each column: numeric unless named in ``categorical`` or not numeric."""
    if not columns:
        raise ProfileError("cannot build a baseline profile with no features")
    rows = {len(v) for v in columns.values()}
    if len(rows) != 1 or 0 in rows:
        raise ProfileError(f"baseline columns need the same, non-zero length; got {sorted(rows)}")
    features: dict[str, Profile] = {}
    for name, values in columns.items():
        if name in categorical or not is_numeric(values):
            features[name] = categorical_profile(name, values)
        else:
            features[name] = numeric_profile(name, values)
    return BaselineProfile(features, rows.pop())


def profile_to_dict(profile: BaselineProfile) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name, f in profile.features.items():
        if isinstance(f, NumericProfile):
            features[name] = {"kind": "numeric", "edges": f.edges.tolist(), "baseline": f.baseline.tolist()}
        else:
            features[name] = {
                "kind": "categorical",
                "categories": list(f.categories),
                "known": sorted(f.known),
                "baseline": f.baseline.tolist(),
            }
    return {"rows": profile.rows, "features": features}


def profile_from_dict(data: dict[str, Any]) -> BaselineProfile:
    features: dict[str, Profile] = {}
    for name, f in data["features"].items():
        baseline = np.asarray(f["baseline"], dtype=np.float64)
        if f["kind"] == "numeric":
            features[name] = NumericProfile(name, np.asarray(f["edges"], dtype=np.float64), baseline)
        else:
            categories = tuple(f["categories"])
            index = {c: i for i, c in enumerate(categories)}
            features[name] = CategoricalProfile(name, categories, frozenset(f["known"]), baseline, index)
    return BaselineProfile(features, int(data["rows"]))
