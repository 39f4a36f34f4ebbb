"""Scoring requests with MLflow 3.17's own protocol code.

``mlflow.pyfunc.scoring_server.invocations`` parses every payload format (dataframe_split,
dataframe_records, instances, inputs, params, CSV), enforces the signature and serialises
``{"predictions": ...}``. Calling it directly makes lockgate's answers byte-compatible with
``mlflow models serve`` by construction; the parity tests hold us to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from lockgate.gateway import tracing
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.skew_setup import SkewSetup
from lockgate.gateway.serving.typed_request import TypedFrameParser, TypedRows
from lockgate.loader.baseline import prediction_values
from lockgate.loader.model_loader import ServableModel
from lockgate.monitoring.skew import SkewTracker


def input_schema(servable: ServableModel) -> Any:
    # From the MLmodel file: known before the native model is loaded (a graph-first restart).
    metadata = servable.model.mlflow_metadata
    return metadata.get_input_schema() if metadata is not None else None


@dataclass
class Observed:
    """What one request's predict call saw: filled in by ``_Capturing``."""

    rows: int = 0
    predict_seconds: float = 0.0
    data: Any = None  # what MLflow's parser handed the model, and what it answered (for the log)
    predictions: Any = None


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
        with tracing.child("predict"):
            predictions = self._model.predict(data, params=params)
        self._observed.predict_seconds = time.perf_counter() - started
        self._observed.rows = len(data) if hasattr(data, "__len__") else 0
        self._observed.data, self._observed.predictions = data, predictions
        self._deployment.predict_sizes.record(self._observed.rows)
        observe_pyfunc_call(self._deployment, data, predictions)
        return predictions


def observe_pyfunc_call(deployment: Deployment, data: Any, predictions: Any) -> None:
    """Count one call of the model's pyfunc ``predict`` for skew: its input frame and its
    predictions. MLflow's scoring path and V2's pyfunc path both call it, so a row is counted the
    same whichever protocol carried it (the lean path counts its batches in the batcher)."""
    skew = deployment.skew
    if skew.inputs is not None and hasattr(data, "columns"):
        observe_frame(skew.inputs, data)
    if skew.predictions is not None:
        observe_predictions(skew.predictions, predictions)


def observe_predictions(tracker: SkewTracker, predictions: Any) -> None:
    """Count a batch's predictions against the prediction baseline (every path calls this)."""
    values = prediction_values(predictions)
    if values is not None:
        tracker.observe_arrays(values.reshape(-1, 1), {}, len(values))


def observe_frame(tracker: SkewTracker, frame: pd.DataFrame) -> None:
    """Hand a request's frame to the tracker with as little pandas work as possible: when the
    columns are the signature's numeric columns in order (MLflow's schema enforcement usually
    makes them so), one ``to_numpy`` call."""
    names = tracker.numeric_names
    rows = len(frame)
    numeric = None
    if names:
        try:
            # Index.tolist() and a list compare: ~2 µs, where tuple(frame.columns) takes ~28 µs.
            block = frame if frame.columns.tolist() == list(names) else frame.reindex(columns=list(names))
            numeric = block.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            numeric = None  # a non-numeric value: let the per-column path count it as missing
            tracker.observe({c: frame[c].to_numpy() for c in frame.columns})
            return
    categorical = {c: frame[c].to_numpy() for c in tracker.profile.features if c not in names and c in frame.columns}
    tracker.observe_arrays(numeric, categorical, rows)


def skew_observer(skew: SkewSetup, columns: tuple[str, ...]) -> Callable[[np.ndarray, np.ndarray, float], None]:
    """The lean path's skew hook: counts a whole batch's matrix (signature column order) and its
    predictions, in the predict thread, with no DataFrame."""
    inputs, outputs = skew.inputs, skew.predictions
    picks: list[int] | None = None
    if inputs is not None and list(inputs.numeric_names) != list(columns):
        picks = [columns.index(n) for n in inputs.numeric_names if n in columns]

    def observe(matrix: np.ndarray, predictions: np.ndarray, _seconds: float) -> None:
        if inputs is not None:
            inputs.observe_arrays(matrix if picks is None else matrix[:, picks], {}, len(matrix))
        if outputs is not None:
            observe_predictions(outputs, predictions)

    return observe


def typed_skew_observer(skew: SkewSetup, parser: TypedFrameParser) -> Callable[[TypedRows, np.ndarray, float], None]:
    """The typed lean path's skew hook: a batch's columns as numpy arrays (no DataFrame)."""
    inputs, outputs = skew.inputs, skew.predictions

    def observe(rows: TypedRows, predictions: np.ndarray, _seconds: float) -> None:
        if inputs is not None:
            inputs.observe(parser.arrays(rows))
        if outputs is not None:
            observe_predictions(outputs, predictions)

    return observe


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


def mlflow_frame(servable: ServableModel, schema: Any) -> Callable[[bytes], pd.DataFrame]:
    """What MLflow hands this version's model for a JSON body: its parser, then its schema
    enforcement (the reference the typed lean parser is checked against at deploy)."""
    from mlflow.models.utils import _enforce_schema

    metadata = servable.model.mlflow_metadata

    def reference(body: bytes) -> pd.DataFrame:
        parsed = scoring_server._parse_json_data(body, metadata, schema)
        frame = _enforce_schema(parsed.data, schema)
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"MLflow's schema enforcement gave a {type(frame).__name__}, not a DataFrame")
        return frame

    return reference
