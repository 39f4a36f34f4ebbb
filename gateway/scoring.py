"""Scoring requests with MLflow 3.17's own protocol code.

``mlflow.pyfunc.scoring_server.invocations`` parses every payload format (dataframe_split,
dataframe_records, instances, inputs, params, CSV), enforces the signature and serialises
``{"predictions": ...}``. Calling it directly makes lockgate's answers byte-compatible with
``mlflow models serve`` by construction; the parity tests hold us to it.
"""

from __future__ import annotations

from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from gateway.endpoints import Deployment


def input_schema(deployment: Deployment) -> Any:
    native = deployment.servable.model.native
    metadata = getattr(native, "metadata", None)
    return metadata.get_input_schema() if metadata is not None else None


def score(deployment: Deployment, body: bytes, content_type: str | None) -> tuple[bytes, int, str]:
    """Return (body, status, media type). Blocking: run it in a worker thread."""
    try:
        result = scoring_server.invocations(
            body, content_type or "", deployment.servable.model.native, deployment.input_schema
        )
    except MlflowException as exc:
        return exc.serialize_as_json().encode(), exc.get_http_status_code(), "application/json"
    payload = result.response.encode() if isinstance(result.response, str) else result.response
    return payload, result.status, result.mimetype
