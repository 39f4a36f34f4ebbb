"""What the metrics collector reads at scrape time: every live endpoint's lineage and skew
trackers, and the gateway's own gauges (cache, ledger)."""

from __future__ import annotations

from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.roles import PRIMARY
from lockgate.monitoring.skew_collector import LiveEndpoint


def live_endpoints(deployer: Deployer) -> list[LiveEndpoint]:
    """Every live deployment of every endpoint, one per role (primary, canary, shadow): each
    role's lineage and skew are their own series."""
    out = []
    for endpoint in list(deployer.endpoints.values()):
        roles = [(PRIMARY, endpoint.model_uri, endpoint.current)]
        roles += [(slot.role, slot.model_uri, slot.current) for slot in endpoint.roles()]
        for role, model_uri, deployment in roles:
            if deployment is not None:
                out.append(_live(endpoint.name, role, model_uri, deployment))
    return out


def _live(name: str, role: str, model_uri: str, deployment: Deployment) -> LiveEndpoint:
    r = deployment.resolved
    info = {
        "endpoint": name,
        "role": role,
        "model": r.name or "",
        "version": deployment.version_label,
        "model_uri": model_uri,
        "weights_commit": r.weights_commit or "",
        "dataset_commit": r.dataset_commit or "",
        "run_id": r.run_id or "",
        "code_commit": r.code_commit or "",
        "serving_path": deployment.serving_path,
        "numeric_contract": str((deployment.path.check or {}).get("contract", "exact")),
    }
    skew = deployment.skew
    baseline = deployment.live.baseline
    return LiveEndpoint(
        name, deployment.version_label, info, skew.inputs, skew.predictions, role=role,
        predict_sizes=deployment.predict_sizes,
        baseline_scores=dict(baseline.scores) if baseline is not None else {},
        baseline_dataset=baseline.dataset if baseline is not None else "",
    )  # fmt: skip


def shadow_of(deployer: Deployer, name: str) -> Deployment | None:
    """The live shadow deployment of endpoint ``name``, if it has one."""
    endpoint = deployer.endpoints.get(name)
    slot = endpoint.shadow if endpoint is not None else None
    return slot.current if slot is not None else None


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
