"""Shadow metrics, on a registry the caller owns: how many copies a shadow got, answered,
failed on or dropped, and how far its answers are from the primary's.

``lockgate_shadow_disagreement_ratio`` is the share of compared rows whose label differs (for a
classifier) since this shadow version started; the counters behind it let PromQL take the same
ratio over any window: ``rate(lockgate_shadow_disagreeing_rows_total[5m]) /
rate(lockgate_shadow_compared_rows_total[5m])``. Regressors get a histogram of each row's
relative difference.
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lockgate.monitoring.shadow_comparison import Comparison

RELATIVE_BUCKETS = (0.0, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 10.0)
OUTCOMES = ("ok", "error", "mismatch")


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lockgate_shadow_requests", "Copies of primary requests a shadow handled, by outcome.",
            ["endpoint", "version", "outcome"], registry=registry,
        )  # fmt: skip
        self.dropped = Counter(
            "lockgate_shadow_dropped", "Copies dropped because the shadow's queue was full.",
            ["endpoint"], registry=registry,
        )  # fmt: skip
        self.compared_rows = Counter(
            "lockgate_shadow_compared_rows", "Rows whose shadow answer was compared with the primary's.",
            ["endpoint", "version", "kind"], registry=registry,
        )  # fmt: skip
        self.disagreeing_rows = Counter(
            "lockgate_shadow_disagreeing_rows", "Compared rows whose shadow label differs from the primary's.",
            ["endpoint", "version"], registry=registry,
        )  # fmt: skip
        self.disagreement_ratio = Gauge(
            "lockgate_shadow_disagreement_ratio",
            "Share of compared rows whose shadow label differs from the primary's, since this shadow version started.",
            ["endpoint", "version"], registry=registry,
        )  # fmt: skip
        self.relative_difference = Histogram(
            "lockgate_shadow_relative_difference", "Per row: |shadow - primary| / |primary| (regressors).",
            ["endpoint", "version"], buckets=RELATIVE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "lockgate_shadow_queue_depth", "Copies waiting for the shadow.", ["endpoint"], registry=registry
        )
        self._totals: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()

    def outcome(self, endpoint: str, version: str, outcome: str) -> None:
        self.requests.labels(endpoint, version, outcome).inc()

    def observe(self, endpoint: str, version: str, comparison: Comparison) -> None:
        self.outcome(endpoint, version, "ok")
        kind = "labels" if comparison.labels else "values"
        self.compared_rows.labels(endpoint, version, kind).inc(comparison.rows)
        if comparison.labels:
            self.disagreeing_rows.labels(endpoint, version).inc(comparison.disagreeing_rows)
            with self._lock:
                totals = self._totals.setdefault((endpoint, version), [0, 0])
                totals[0] += comparison.disagreeing_rows
                totals[1] += comparison.rows
                ratio = totals[0] / totals[1] if totals[1] else 0.0
            self.disagreement_ratio.labels(endpoint, version).set(ratio)
            return
        histogram = self.relative_difference.labels(endpoint, version)
        for value in comparison.relative_differences.tolist():
            histogram.observe(value)

    def forget(self, endpoint: str, version: str) -> None:
        """Remove every series of a shadow version that was swapped out or dropped."""
        with self._lock:
            self._totals.pop((endpoint, version), None)
        for outcome in OUTCOMES:
            with contextlib.suppress(KeyError):
                self.requests.remove(endpoint, version, outcome)
        for kind in ("labels", "values"):
            with contextlib.suppress(KeyError):
                self.compared_rows.remove(endpoint, version, kind)
        for family in (self.disagreeing_rows, self.disagreement_ratio, self.relative_difference):
            with contextlib.suppress(KeyError):
                family.remove(endpoint, version)
