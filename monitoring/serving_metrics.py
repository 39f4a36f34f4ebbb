"""Serving and deploy metrics, on a registry the caller owns (never the global one).

Series are labelled by endpoint, version and ``role`` (``primary`` or ``canary``: which side of
the endpoint's traffic policy answered), and requests also by ``protocol``: ``mlflow``
(``/invocations``), ``v2-rest`` or ``v2-grpc``. ``forget(endpoint, version, role)`` removes every
series of a version that was swapped out, promoted or unloaded, so dashboards never show ghosts.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets from 0.5 ms: the gateway's own overhead lives below a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class AnswerSeries:
    """The series one answered request of an endpoint's version, role and protocol moves, found
    once: ``labels()`` takes a lock and hashes the label values on every call (six calls a request
    came to 36-44 us under cProfile, driving the app in process: docs/performance.md)."""

    inflight: Any
    answered: Any  # lockgate_requests_total{status="200"}
    duration: Any
    predict: Any
    rows: Any

    def answered_after(self, seconds: float, rows: int, predict_seconds: float) -> None:
        self.predict.observe(predict_seconds)
        self.rows.inc(rows)
        self.answered.inc()
        self.duration.observe(seconds)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lockgate_requests", "Prediction requests by endpoint, version, status and protocol.",
            ["endpoint", "version", "status", "protocol", "role"], registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "lockgate_errors", "Failed prediction requests by MLflow error_code.",
            ["endpoint", "version", "error_code", "role"], registry=registry,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "lockgate_request_duration_seconds", "Whole request time in the gateway, by protocol.",
            ["endpoint", "version", "protocol", "role"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.predict_seconds = Histogram(
            "lockgate_predict_duration_seconds", "Time inside the model's predict.",
            ["endpoint", "version", "role"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.rows = Counter(
            "lockgate_rows_predicted", "Rows predicted.", ["endpoint", "version", "role"], registry=registry
        )
        self.inflight = Gauge(
            "lockgate_inflight_requests", "Requests being served now.", ["endpoint"], registry=registry
        )
        self.deploys = Counter(
            "lockgate_deploys", "Deploys, swaps, rollbacks, undeploys and failed attempts.",
            ["endpoint", "action", "result"], registry=registry,
        )  # fmt: skip
        self.signature_refusals = Counter(
            "lockgate_signature_refusals",
            "Versions refused before taking traffic for their signature (unsigned, untrusted, mismatch).",
            ["endpoint", "role", "reason"], registry=registry,
        )  # fmt: skip
        self.load_seconds = Histogram(
            "lockgate_load_duration_seconds", "Resolve + fetch + load + warm-up of a version.",
            ["endpoint"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=registry,
        )  # fmt: skip
        self.bytes_fetched = Counter(
            "lockgate_fetch_bytes", "Bytes fetched from the store for deploys.", ["endpoint"], registry=registry
        )
        self.bytes_reused = Counter(
            "lockgate_reused_bytes",
            "Bytes a deploy found locally instead of fetching.",
            ["endpoint"],
            registry=registry,
        )
        self._seen: dict[tuple[str, str, str], set[tuple[str, ...]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._answer_series: dict[tuple[str, str, str, str], AnswerSeries] = {}

    def answer_series(self, endpoint: str, version: str, protocol: str, role: str) -> AnswerSeries:
        """The series of an answered request (status 200) of ``endpoint``'s ``version`` in ``role``
        through ``protocol``, made once and kept until the version is forgotten."""
        key = (endpoint, version, protocol, role)
        found = self._answer_series.get(key)
        if found is not None:
            return found
        with self._lock:
            seen = self._seen[(endpoint, version, role)]
            seen.update((("requests", "200", protocol), ("duration", protocol), ("predict",)))
            found = AnswerSeries(
                self.inflight.labels(endpoint),
                self.requests.labels(endpoint, version, "200", protocol, role),
                self.request_seconds.labels(endpoint, version, protocol, role),
                self.predict_seconds.labels(endpoint, version, role),
                self.rows.labels(endpoint, version, role),
            )
            self._answer_series[key] = found
        return found

    def observe_request(
        self,
        endpoint: str,
        version: str,
        status: int,
        seconds: float,
        error_code: str | None = None,
        *,
        protocol: str = "mlflow",
        role: str = "primary",
    ) -> None:
        self.requests.labels(endpoint, version, str(status), protocol, role).inc()
        self.request_seconds.labels(endpoint, version, protocol, role).observe(seconds)
        with self._lock:
            seen = self._seen[(endpoint, version, role)]
            seen.add(("requests", str(status), protocol))
            seen.add(("duration", protocol))
            if error_code:
                seen.add(("errors", error_code))
        if error_code:
            self.errors.labels(endpoint, version, error_code, role).inc()

    def observe_predict(self, endpoint: str, version: str, rows: int, seconds: float, role: str = "primary") -> None:
        self.predict_seconds.labels(endpoint, version, role).observe(seconds)
        self.rows.labels(endpoint, version, role).inc(rows)
        with self._lock:
            self._seen[(endpoint, version, role)].add(("predict",))

    def forget(self, endpoint: str, version: str, role: str = "primary") -> None:
        """Remove every series of ``version`` of ``endpoint`` in ``role``."""
        with self._lock:
            seen = self._seen.pop((endpoint, version, role), set())
            # A late request of the forgotten version moves a child no longer exported; the same
            # version deployed again gets new ones.
            for key in [k for k in self._answer_series if (k[0], k[1], k[3]) == (endpoint, version, role)]:
                del self._answer_series[key]
        for entry in seen:
            if entry[0] == "requests":
                self.requests.remove(endpoint, version, entry[1], entry[2], role)
            elif entry[0] == "duration":
                self.request_seconds.remove(endpoint, version, entry[1], role)
            elif entry[0] == "errors":
                self.errors.remove(endpoint, version, entry[1], role)
        for family in (self.predict_seconds, self.rows):
            with contextlib.suppress(KeyError):  # a version that never predicted has no series
                family.remove(endpoint, version, role)
