"""Scrape-time exporter of serving skew, endpoint info and rows per predict call.

A custom collector: at each scrape it asks the live endpoints for their trackers, lineage and
predict sizes, so series of unloaded versions disappear by themselves. Skew carries only the bounded labels
endpoint, version and feature; commits and references appear only in ``lockgate_endpoint_info``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from lockgate.monitoring.predict_sizes import PredictSizes
from lockgate.monitoring.skew import SkewTracker


@dataclass
class LiveEndpoint:
    endpoint: str
    version: str
    info: dict[str, str]
    tracker: SkewTracker | None = None
    prediction_tracker: SkewTracker | None = None
    extra_gauges: dict[str, float] = field(default_factory=dict)
    role: str = "primary"  # primary, canary or shadow: one version may serve in two roles
    predict_sizes: PredictSizes | None = None
    # The model's own score on its evaluation (or training) data, and which of the two.
    baseline_scores: dict[str, float] = field(default_factory=dict)
    baseline_dataset: str = ""


INFO_LABELS = (
    "endpoint",
    "role",
    "model",
    "version",
    "model_uri",
    "weights_commit",
    "dataset_commit",
    "run_id",
    "code_commit",
    "serving_path",
    "numeric_contract",  # exact, float64~1e-12 or float32~1e-05: what the fast path promises
)


class SkewCollector(Collector):
    def __init__(self, live: Callable[[], Iterable[LiveEndpoint]], cache_stats: Callable[[], dict[str, float]]) -> None:
        self._live = live
        self._cache_stats = cache_stats

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "lockgate_endpoint_info", "One series per live endpoint: its lineage.", labels=INFO_LABELS
        )
        psi = GaugeMetricFamily(
            "lockgate_feature_skew_psi",
            "PSI of live inputs vs the training baseline.",
            labels=["endpoint", "version", "role", "feature"],
        )
        js = GaugeMetricFamily(
            "lockgate_feature_skew_js_distance",
            "Jensen-Shannon distance (base 2) vs the baseline.",
            labels=["endpoint", "version", "role", "feature"],
        )
        oor = GaugeMetricFamily(
            "lockgate_feature_out_of_range_ratio",
            "Share of live values outside the training range.",
            labels=["endpoint", "version", "role", "feature"],
        )
        missing = GaugeMetricFamily(
            "lockgate_feature_missing_ratio",
            "Share of live values missing.",
            labels=["endpoint", "version", "role", "feature"],
        )
        unseen = GaugeMetricFamily(
            "lockgate_feature_unseen_category_ratio",
            "Share of live categories never seen in training.",
            labels=["endpoint", "version", "role", "feature"],
        )
        rows = GaugeMetricFamily(
            "lockgate_skew_window_rows", "Rows in the skew window.", labels=["endpoint", "version", "role"]
        )
        max_psi = GaugeMetricFamily(
            "lockgate_skew_max_psi", "Largest feature PSI of the endpoint.", labels=["endpoint", "version", "role"]
        )
        pred_psi = GaugeMetricFamily(
            "lockgate_prediction_skew_psi",
            "PSI of live predictions vs predictions on a baseline sample.",
            labels=["endpoint", "version", "role"],
        )
        pred_js = GaugeMetricFamily(
            "lockgate_prediction_skew_js_distance",
            "JS distance of live vs baseline predictions.",
            labels=["endpoint", "version", "role"],
        )
        batch_rows = HistogramMetricFamily(
            "lockgate_batch_size_rows", "Rows per predict call (a merged batch is one call).",
            labels=["endpoint", "version", "role"],
        )  # fmt: skip
        baseline = GaugeMetricFamily(
            "lockgate_baseline_score",
            "The model's own score on the dataset its run logged for evaluation (dataset=evaluation), "
            "else on its training data (dataset=training: optimistic).",
            labels=["endpoint", "version", "metric", "dataset"],
        )
        scored: set[tuple[str, str]] = set()
        for live in self._live():
            info.add_metric([live.info.get(label, "") for label in INFO_LABELS], 1.0)
            if live.baseline_scores and (live.endpoint, live.version) not in scored:
                scored.add((live.endpoint, live.version))  # one version in two roles: one series
                for metric, value in live.baseline_scores.items():
                    baseline.add_metric([live.endpoint, live.version, metric, live.baseline_dataset], value)
            if live.predict_sizes is not None:
                buckets, rows_sum = live.predict_sizes.buckets()
                batch_rows.add_metric([live.endpoint, live.version, live.role], buckets, rows_sum)
            if live.tracker is not None:
                report = live.tracker.report()
                base = [live.endpoint, live.version, live.role]
                rows.add_metric(base, report.rows)
                max_psi.add_metric(base, report.max_psi)
                for f in report.features:
                    labels = [*base, f.feature]
                    psi.add_metric(labels, f.psi)
                    js.add_metric(labels, f.js_distance)
                    oor.add_metric(labels, f.out_of_range_ratio)
                    missing.add_metric(labels, f.missing_ratio)
                    unseen.add_metric(labels, f.unseen_category_ratio)
            if live.prediction_tracker is not None:
                report = live.prediction_tracker.report()
                if report.features:
                    base = [live.endpoint, live.version, live.role]
                    pred_psi.add_metric(base, report.features[0].psi)
                    pred_js.add_metric(base, report.features[0].js_distance)
        yield from (info, psi, js, oor, missing, unseen, rows, max_psi, pred_psi, pred_js, batch_rows, baseline)
        stats = self._cache_stats()
        for name, help_text in (
            ("lockgate_cache_used_bytes", "Bytes held by the model cache."),
            ("lockgate_cache_limit_bytes", "The cache bound (0: unbounded)."),
            ("lockgate_cache_versions", "Model versions held in the cache."),
            ("lockgate_ledger_events_pending", "Ledger events waiting in memory for the store."),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], stats.get(name, 0.0))
            yield gauge
        rejected = CounterMetricFamily(
            "lockgate_ledger_events_rejected", "Ledger events set aside because they can never be written."
        )
        rejected.add_metric([], stats.get("lockgate_ledger_events_rejected_total", 0.0))
        yield rejected
