"""Scoring requests with MLflow 3.17's own protocol code.

``mlflow.pyfunc.scoring_server.invocations`` parses every payload format (dataframe_split,
dataframe_records, instances, inputs, params, CSV), enforces the signature and serialises
``{"predictions": ...}``. Calling it directly makes lockgate's answers byte-compatible with
``mlflow models serve`` by construction; the parity tests hold us to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from gateway.endpoints import Deployment
from loader.baseline import prediction_values


def input_schema(deployment: Deployment) -> Any:
    native = deployment.servable.model.native
    metadata = getattr(native, "metadata", None)
    return metadata.get_input_schema() if metadata is not None else None


@dataclass
class Observed:
    """What one request's predict call saw: filled in by ``_Capturing``."""

    rows: int = 0
    predict_seconds: float = 0.0


class _Capturing:
    """Stands in for the pyfunc model inside MLflow's ``invocations``: forwards ``predict``
    and hands the frame MLflow parsed, and the predictions, to the skew trackers. No second
    parse of the request."""

    def __init__(self, deployment: Deployment, observed: Observed) -> None:
        self._deployment = deployment
        self._model = deployment.servable.model.native
        self._observed = observed
        self.metadata = self._model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        started = time.perf_counter()
        predictions = self._model.predict(data, params=params)
        self._observed.predict_seconds = time.perf_counter() - started
        self._observed.rows = len(data) if hasattr(data, "__len__") else 0
        skew = self._deployment.skew
        if skew.inputs is not None and hasattr(data, "columns"):
            skew.inputs.observe({c: data[c].to_numpy() for c in data.columns})
        if skew.predictions is not None:
            values = prediction_values(predictions)
            if values is not None:
                skew.predictions.observe({"prediction": values})
        return predictions


def score(deployment: Deployment, body: bytes, content_type: str | None) -> tuple[bytes, int, str, Observed]:
    """Return (body, status, media type, what predict saw). Blocking: run it in a worker thread."""
    observed = Observed()
    try:
        result = scoring_server.invocations(
            body, content_type or "", _Capturing(deployment, observed), deployment.input_schema
        )
    except MlflowException as exc:
        return exc.serialize_as_json().encode(), exc.get_http_status_code(), "application/json", observed
    payload = result.response.encode() if isinstance(result.response, str) else result.response
    return payload, result.status, result.mimetype, observed
