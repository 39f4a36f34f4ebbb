"""Live skew tracking for one deployed version: counts per feature in a ring of sub-windows,
and the skew report computed from them at scrape time.

``observe`` is on the request path: one vectorised ``searchsorted`` + ``bincount`` per numeric
feature. Everything else (PSI, JS, ratios) happens in ``report``, at scrape time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitoring.divergence import js_distance, psi
from monitoring.profile import BaselineProfile, CategoricalProfile, NumericProfile

WARN_PSI = 0.1
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
        self._counts = {n: np.zeros((sub_windows, f.bins), dtype=np.int64) for n, f in profile.features.items()}
        self._unseen = {n: np.zeros(sub_windows, dtype=np.int64) for n in self._names}
        self._rows = np.zeros(sub_windows, dtype=np.int64)
        self._slot_epoch = np.full(sub_windows, -1, dtype=np.int64)
        self._lock = threading.Lock()

    def _slot(self) -> int:
        epoch = int(self._clock() // self._slot_seconds)
        slot = epoch % self._slots
        if self._slot_epoch[slot] != epoch:  # a new sub-window: forget what it held before
            self._slot_epoch[slot] = epoch
            self._rows[slot] = 0
            for name in self._names:
                self._counts[name][slot] = 0
                self._unseen[name][slot] = 0
        return slot

    def _live_slots(self) -> NDArray[np.bool_]:
        epoch = int(self._clock() // self._slot_seconds)
        return (self._slot_epoch > epoch - self._slots) & (self._slot_epoch >= 0)

    def observe(self, columns: Mapping[str, NDArray[Any]]) -> None:
        """Count one request's rows. Columns missing from the request count as missing values."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if rows == 0:
            return
        binned: dict[str, tuple[NDArray[np.intp], int]] = {}
        for name, feature in self.profile.features.items():
            values = columns.get(name)
            if values is None:
                binned[name] = (np.full(rows, feature.missing_bin, dtype=np.intp), 0)
            elif isinstance(feature, NumericProfile):
                try:
                    binned[name] = (feature.bin_of(values), 0)
                except (TypeError, ValueError):  # not numbers: count as missing rather than fail a request
                    binned[name] = (np.full(rows, feature.missing_bin, dtype=np.intp), 0)
            else:
                binned[name] = feature.bin_of(np.asarray(values, dtype=object))
        with self._lock:
            slot = self._slot()
            self._rows[slot] += rows
            for name, (bins, unseen) in binned.items():
                self._counts[name][slot] += np.bincount(bins, minlength=self._counts[name].shape[1])
                self._unseen[name][slot] += unseen

    def report(self) -> SkewReport:
        with self._lock:
            live = self._live_slots()
            rows = int(self._rows[live].sum())
            counts = {n: self._counts[n][live].sum(axis=0).astype(np.float64) for n in self._names}
            unseen = {n: int(self._unseen[n][live].sum()) for n in self._names}
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
            unseen_ratio = unseen[name] / total if total and isinstance(feature, CategoricalProfile) else 0.0
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
