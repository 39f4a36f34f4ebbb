"""What the metrics collector reads at scrape time: every live endpoint's lineage and skew
trackers, and the gateway's own gauges (cache, ledger)."""

from __future__ import annotations

from gateway.deployer import Deployer
from monitoring.skew_collector import LiveEndpoint


def live_endpoints(deployer: Deployer) -> list[LiveEndpoint]:
    out = []
    for endpoint in list(deployer.endpoints.values()):
        current = endpoint.current
        if current is None:
            continue
        r = current.resolved
        info = {
            "endpoint": endpoint.name,
            "model": r.name or "",
            "version": current.version_label,
            "model_uri": endpoint.model_uri,
            "weights_commit": r.weights_commit or "",
            "dataset_commit": r.dataset_commit or "",
            "run_id": r.run_id or "",
            "code_commit": r.code_commit or "",
            "serving_path": current.serving_path,
            "numeric_contract": str((current.path.check or {}).get("contract", "exact")),
        }
        out.append(
            LiveEndpoint(endpoint.name, current.version_label, info, current.skew.inputs, current.skew.predictions)
        )
    return out


def gateway_stats(deployer: Deployer) -> dict[str, float]:
    cache = deployer.loader.cache
    held = cache.held()
    return {
        "lockgate_cache_used_bytes": float(sum(int(m.get("size", 0)) for m in held.values())),
        "lockgate_cache_limit_bytes": float(cache.max_bytes or 0),
        "lockgate_cache_versions": float(len(held)),
        "lockgate_ledger_events_pending": float(deployer.ledger.pending),
        "lockgate_ledger_events_rejected_total": float(deployer.ledger.rejected_total),
    }
