"""Inference-log metrics, on a registry the caller owns.

``lockgate_inference_log_rows_total{endpoint,outcome}``: every scored row of a logged endpoint
ends in exactly one outcome: ``logged`` (committed to the store), ``sampled_out`` (not chosen by
the sample), or ``dropped`` (the queue or the outage buffer was full, or the rows could not be
written). ``lockgate_inference_log_commit_lag_seconds{endpoint}``: the age of the oldest row not
committed yet (0 when everything is), so an alert sees a store outage grow.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

OUTCOMES = ("logged", "sampled_out", "dropped")


class InferenceLogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "lockgate_inference_log_rows", "Scored rows of logged endpoints, by what became of them.",
            ["endpoint", "outcome"], registry=registry,
        )  # fmt: skip
        self.commit_lag = Gauge(
            "lockgate_inference_log_commit_lag_seconds", "Age of the oldest logged row not yet committed (0: none).",
            ["endpoint"], registry=registry,
        )  # fmt: skip
        self.pending_rows = Gauge(
            "lockgate_inference_log_pending_rows", "Logged rows waiting for their commit (queued, open or sealed).",
            registry=registry,
        )  # fmt: skip
        self.commits = Counter(
            "lockgate_inference_log_commits", "Inference-log commits, by result (ok; retry: refused for now).",
            ["endpoint", "result"], registry=registry,
        )  # fmt: skip

    def count(self, endpoint: str, outcome: str, rows: int) -> None:
        if rows:
            self.rows.labels(endpoint, outcome).inc(rows)
