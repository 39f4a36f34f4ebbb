"""The deploy metrics, as a subscriber to the deployer's events: deploy counts by action and
outcome, load time, bytes fetched and reused; and the series of a retired version removed."""

from __future__ import annotations

from lockgate.gateway.serving.endpoints import Deployment
from lockgate.monitoring.serving_metrics import ServingMetrics


class DeployMetrics:
    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def deployed(self, name: str, action: str, deployment: Deployment | None) -> None:
        metrics = self._metrics
        # "failed" for the primary, "canary-failed" or "shadow-failed" for the other roles.
        failed = action == "failed" or action.endswith("-failed")
        metrics.deploys.labels(name, action, "failed" if failed else "ok").inc()
        if deployment is not None:
            report = deployment.servable.report
            metrics.load_seconds.labels(name).observe(report.total_seconds)
            metrics.bytes_fetched.labels(name).inc(report.fetch.bytes_fetched)
            metrics.bytes_reused.labels(name).inc(report.fetch.bytes_reused)

    def signature_refused(self, name: str, role: str, refusal: str) -> None:
        self._metrics.signature_refusals.labels(name, role, refusal).inc()

    def retired(self, name: str, deployment: Deployment, role: str = "primary") -> None:
        self._metrics.forget(name, deployment.version_label, role)
