"""V2 models: which deployment answers a V2 model name and version, readiness, the metadata
built from the MLflow signature, and the lineage every V2 answer carries. Shared by the REST
routes and the gRPC service."""

from __future__ import annotations

from typing import Any

from gateway.deployer import Deployer
from gateway.endpoints import Deployment
from gateway.errors import GatewayError


class V2LookupError(Exception):
    """No deployment answers this model (and version): ``status`` is 404 or 503."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def find_serving(deployer: Deployer, name: str, version: str | None) -> Deployment:
    """The deployment serving model ``name`` now, if it is version ``version`` (when given)."""
    try:
        endpoint = deployer.get(name)
    except GatewayError as exc:
        raise V2LookupError(exc.status, str(exc)) from exc
    deployment = endpoint.current
    if deployment is None:
        raise V2LookupError(503, f"model {name!r} has no loaded version yet: {endpoint.last_error or endpoint.status}")
    if version and version != deployment.version_label:
        raise V2LookupError(
            404, f"version {version!r} of model {name!r} is not serving (serving: {deployment.version_label})"
        )
    return deployment


def ready_endpoints(deployer: Deployer, configured: list[str]) -> tuple[bool, list[str]]:
    """(every configured endpoint serves, the ones still waiting)."""
    names = configured or list(deployer.endpoints)
    waiting = [n for n in names if n not in deployer.endpoints or deployer.endpoints[n].current is None]
    return bool(names) and not waiting, waiting


def lineage(deployment: Deployment) -> dict[str, str]:
    """What every V2 answer carries in its parameters: the version and its commits."""
    r = deployment.resolved
    return {
        "model_version": r.version or "none",
        "weights_commit": r.weights_commit or "none",
        "dataset_commit": r.dataset_commit or "none",
    }


_MLFLOW_TO_V2 = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
                 "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}  # fmt: skip


def model_metadata(name: str, deployment: Deployment) -> dict[str, Any]:
    schema = deployment.input_schema
    inputs = []
    if schema is not None and schema.has_input_names():
        for spec in schema.inputs:
            kind = getattr(getattr(spec, "type", None), "name", "string")
            inputs.append({"name": spec.name, "datatype": _MLFLOW_TO_V2.get(str(kind), "BYTES"), "shape": [-1, 1]})
    return {
        "name": name,
        "versions": [deployment.version_label],
        "platform": "mlflow",
        "inputs": inputs,
        "outputs": [{"name": "predict", "datatype": "FP64" if not inputs else "BYTES", "shape": [-1]}],
        "parameters": lineage(deployment) | {"serving_path": deployment.serving_path},
    }


def signature_names(deployment: Deployment) -> list[str]:
    schema = deployment.input_schema
    return list(schema.input_names()) if schema is not None and schema.has_input_names() else []
