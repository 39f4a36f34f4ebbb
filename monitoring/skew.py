"""Live skew tracking for one deployed version: counts per feature in a ring of sub-windows,
and the skew report computed from them at scrape time.

``observe`` is on the request path: one vectorised ``searchsorted`` + ``bincount`` per numeric
feature. Everything else (PSI, JS, ratios) happens in ``report``, at scrape time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lockgate.monitoring.divergence import js_distance, psi
from lockgate.monitoring.profile import BaselineProfile, CategoricalProfile, NumericProfile, edge_tolerance

WARN_PSI = 0.1
_BROADCAST_MAX_ROWS = 64
ALERT_PSI = 0.25
MIN_ROWS = 1000


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    psi: float
    js_distance: float
    out_of_range_ratio: float
    missing_ratio: float
    unseen_category_ratio: float


@dataclass(frozen=True)
class SkewReport:
    rows: int
    features: tuple[FeatureSkew, ...]

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features), default=0.0)

    def feature(self, name: str) -> FeatureSkew:
        return next(f for f in self.features if f.feature == name)


class SkewTracker:
    def __init__(
        self,
        profile: BaselineProfile,
        *,
        window_seconds: float = 3600.0,
        sub_windows: int = 12,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self._slot_seconds = window_seconds / sub_windows
        self._slots = sub_windows
        self._clock = clock
        self._names = profile.feature_names
        # Numeric features are binned all at once: a (features x edges) matrix of lower edge
        # bounds, padded with +inf, and one flat count vector per sub-window.
        self.numeric_names = tuple(n for n, f in profile.features.items() if isinstance(f, NumericProfile))
        numeric = [profile.features[n] for n in self.numeric_names]
        width = max((len(f.edges) for f in numeric), default=1)  # type: ignore[union-attr]
        self._lower = np.full((len(numeric), width), np.inf)
        self._top = np.zeros(len(numeric))
        self._interior = np.zeros(len(numeric), dtype=np.intp)
        offsets = []
        position = 0
        for j, f in enumerate(numeric):
            assert isinstance(f, NumericProfile)
            tol = edge_tolerance(f.edges)
            self._lower[j, : len(f.edges)] = f.edges - tol
            self._top[j] = f.edges[-1] + tol[-1]
            self._interior[j] = len(f.edges) - 1
            offsets.append(position)
            position += f.bins
        self._offsets = np.array(offsets, dtype=np.intp)
        self._numeric_bins = position
        self._numeric_counts = np.zeros((sub_windows, max(position, 1)), dtype=np.int64)
        self._categorical = {n: f for n, f in profile.features.items() if isinstance(f, CategoricalProfile)}
        self._counts = {n: np.zeros((sub_windows, f.bins), dtype=np.int64) for n, f in self._categorical.items()}
        self._unseen = {n: np.zeros(sub_windows, dtype=np.int64) for n in self._categorical}
        self._rows = np.zeros(sub_windows, dtype=np.int64)
        self._slot_epoch = np.full(sub_windows, -1, dtype=np.int64)
        self._lock = threading.Lock()

    def _slot(self) -> int:
        epoch = int(self._clock() // self._slot_seconds)
        slot = epoch % self._slots
        if self._slot_epoch[slot] != epoch:  # a new sub-window: forget what it held before
            self._slot_epoch[slot] = epoch
            self._rows[slot] = 0
            self._numeric_counts[slot] = 0
            for name in self._categorical:
                self._counts[name][slot] = 0
                self._unseen[name][slot] = 0
        return slot

    def _live_slots(self) -> NDArray[np.bool_]:
        epoch = int(self._clock() // self._slot_seconds)
        return (self._slot_epoch > epoch - self._slots) & (self._slot_epoch >= 0)

    def numeric_bins(self, matrix: NDArray[np.float64]) -> NDArray[np.intp]:
        """Flat bin index of each (row, numeric feature): the same rule as
        ``NumericProfile.bin_of``, for every feature in one pass."""
        if matrix.shape[0] <= _BROADCAST_MAX_ROWS:
            # Few rows: one broadcast compare against every feature's edges beats 50 calls.
            below = (matrix[:, :, None] >= self._lower[None, :, :]).sum(axis=2)  # NaN: fixed below
        else:
            # Many rows: per-feature binary search is O(rows x log edges) instead of x edges.
            below = np.empty(matrix.shape, dtype=np.intp)
            for j in range(matrix.shape[1]):
                lower = self._lower[j, : self._interior[j] + 1]
                below[:, j] = np.searchsorted(lower, matrix[:, j], side="right")
        interior = self._interior[None, :]
        below = np.minimum(below, interior + 1)  # +inf counts padded edges: it is overflow
        idx = np.where((below == interior + 1) & (matrix <= self._top[None, :]), interior, below)
        idx = np.where(np.isnan(matrix), interior + 2, idx)
        return (idx + self._offsets[None, :]).astype(np.intp)

    def observe_arrays(self, numeric: NDArray[Any] | None, categorical: Mapping[str, NDArray[Any]], rows: int) -> None:
        """Count one request: ``numeric`` is rows x ``numeric_names`` (NaN for missing)."""
        if rows == 0:
            return
        flat = None
        if self.numeric_names:
            if numeric is None:
                numeric = np.full((rows, len(self.numeric_names)), np.nan)
            flat = np.bincount(
                self.numeric_bins(np.asarray(numeric, dtype=np.float64)).ravel(), minlength=self._numeric_bins
            )
        binned: dict[str, tuple[NDArray[np.intp], int]] = {}
        for name, feature in self._categorical.items():
            values = categorical.get(name)
            if values is None:
                binned[name] = (np.full(rows, feature.missing_bin, dtype=np.intp), 0)
            else:
                binned[name] = feature.bin_of(np.asarray(values, dtype=object))
        with self._lock:
            slot = self._slot()
            self._rows[slot] += rows
            if flat is not None:
                self._numeric_counts[slot] += flat
            for name, (bins, unseen) in binned.items():
                self._counts[name][slot] += np.bincount(bins, minlength=self._counts[name].shape[1])
                self._unseen[name][slot] += unseen

    def observe(self, columns: Mapping[str, NDArray[Any]]) -> None:
        """Count one request given as columns. Missing or non-numeric numeric columns count
        as missing values rather than failing the request."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if rows == 0:
            return
        numeric = np.full((rows, len(self.numeric_names)), np.nan)
        for j, name in enumerate(self.numeric_names):
            values = columns.get(name)
            if values is not None:
                with contextlib.suppress(TypeError, ValueError):  # not numbers: they stay missing
                    numeric[:, j] = np.asarray(values, dtype=np.float64)
        self.observe_arrays(numeric, {n: columns[n] for n in self._categorical if n in columns}, rows)

    def report(self) -> SkewReport:
        with self._lock:
            live = self._live_slots()
            rows = int(self._rows[live].sum())
            numeric_counts = self._numeric_counts[live].sum(axis=0).astype(np.float64)
            counts = {n: self._counts[n][live].sum(axis=0).astype(np.float64) for n in self._categorical}
            unseen = {n: int(self._unseen[n][live].sum()) for n in self._categorical}
        for j, name in enumerate(self.numeric_names):
            start = int(self._offsets[j])
            counts[name] = numeric_counts[start : start + self.profile.features[name].bins]
        features = []
        for name, feature in self.profile.features.items():
            c = counts[name]
            total = c.sum()
            if isinstance(feature, NumericProfile):
                low, high = feature.out_of_range_bins()
                out_of_range = (c[low] + c[high]) / total if total else 0.0
            else:
                out_of_range = 0.0
            missing = c[feature.missing_bin] / total if total else 0.0
            unseen_ratio = unseen.get(name, 0) / total if total and isinstance(feature, CategoricalProfile) else 0.0
            features.append(
                FeatureSkew(
                    feature=name,
                    psi=psi(feature.baseline, c),
                    js_distance=js_distance(feature.baseline, c),
                    out_of_range_ratio=float(out_of_range),
                    missing_ratio=float(missing),
                    unseen_category_ratio=float(unseen_ratio),
                )
            )
        return SkewReport(rows, tuple(features))
