"""A V2 (Open Inference Protocol) inference over the same data plane as ``/invocations``.

V2 is one more codec: its tensors become the input the deployment's lean path takes (a float64
matrix, or ``TypedRows``) and go through the same batcher and predict; anything the lean path
does not take (a custom pyfunc, a value of another type) becomes a DataFrame for MLflow's own
pyfunc predict, which enforces the signature and names what is wrong. The answer is the same
predictions ``/invocations`` gives for the same rows.

Inputs map onto an MLflow signature with named columns:

- one input per column, each of shape ``[N]`` or ``[N, 1]`` (``parameters.content_type: "pd"``,
  MLServer's DataFrame convention, is accepted and means the same);
- or, for an all-``double`` signature, one numeric input of shape ``[N, columns]`` whose columns
  are the signature's, in order (how Triton clients send a feature matrix).

Request ``parameters`` other than the protocol's own go to the model as MLflow params.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from gateway.endpoints import Deployment
from gateway.fast_request import NumericFrameParser
from gateway.typed_request import TypedFrameParser, TypedRows
from gateway.v2_tensors import Tensor, V2Request, V2RequestError

# Request parameters that belong to the protocol (and its binary extension), not to the model.
_PROTOCOL_PARAMETERS = frozenset({"content_type", "binary_data_output", "headers", "timeout", "priority"})


@dataclass
class V2Prediction:
    predictions: np.ndarray
    rows: int
    predict_seconds: float


def _columns(request: V2Request, names: list[str]) -> tuple[dict[str, Tensor], int]:
    """The request's tensors as one flat column tensor per signature column, and the row count."""
    inputs = request.inputs
    if len(inputs) == 1 and inputs[0].name not in names and len(inputs[0].shape) == 2 and names:
        matrix = inputs[0]
        rows, width = matrix.shape
        if width != len(names):
            raise V2RequestError(
                f"input {matrix.name!r}: shape {list(matrix.shape)} has {width} columns; the signature has "
                f"{len(names)} ({', '.join(names)})"
            )
        block = matrix.array().reshape(rows, width)
        return {name: Tensor(name, matrix.datatype, (rows,), block[:, j]) for j, name in enumerate(names)}, rows
    unknown = [t.name for t in inputs if t.name not in names]
    if unknown and names:
        raise V2RequestError(f"inputs {unknown} are not in the model's signature (inputs: {', '.join(names)})")
    missing = [n for n in names if n not in {t.name for t in inputs}]
    if missing:
        raise V2RequestError(f"missing inputs {missing} (the signature's inputs: {', '.join(names)})")
    rows = _rows_of(inputs[0])
    for tensor in inputs:
        if _rows_of(tensor) != rows:
            raise V2RequestError(
                f"input {tensor.name!r} has {_rows_of(tensor)} rows, input {inputs[0].name!r} has {rows}"
            )
    return {t.name: t for t in inputs}, rows


def _rows_of(tensor: Tensor) -> int:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise V2RequestError(f"input {tensor.name!r}: a column needs shape [N] or [N, 1], not {list(shape)}")


def model_parameters(request: V2Request) -> dict[str, Any] | None:
    params = {k: v for k, v in request.parameters.items() if k not in _PROTOCOL_PARAMETERS}
    return params or None


_NUMERIC = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"})


def lean_input(deployment: Deployment, columns: dict[str, Tensor], rows: int) -> Any | None:
    """The lean path's input for these columns, or None when it does not take them."""
    parser = deployment.parser
    if parser is None or deployment.batcher is None or rows == 0:
        return None
    if isinstance(parser, NumericFrameParser):
        picked = [columns[n] for n in parser.columns]
        if any(t.datatype not in _NUMERIC for t in picked):
            return None  # booleans and strings: MLflow's enforcement names the problem
        if all(isinstance(t.values, list) for t in picked):
            # One np.array for the whole request, as the /invocations parser does.
            matrix = np.array([t.values for t in picked], dtype=np.float64).T.copy()
        else:
            matrix = np.column_stack([t.array().astype(np.float64) for t in picked])
        return matrix if np.isfinite(matrix).all() else None
    if isinstance(parser, TypedFrameParser):
        typed = TypedRows([columns[n].as_list() for n in parser.columns], rows)
        return typed if parser.accepts(typed) else None
    return None


async def infer(deployment: Deployment, request: V2Request) -> V2Prediction:
    names = list(deployment.input_names)
    columns, rows = _columns(request, names)
    params = model_parameters(request)
    if params is None:
        lean = lean_input(deployment, columns, rows)
        if lean is not None:
            assert deployment.batcher is not None
            try:
                predictions, seconds = await deployment.batcher.predict(lean)
                return V2Prediction(np.asarray(predictions), rows, seconds)
            except Exception:  # as on /invocations: MLflow's code, on the same model, names the problem
                pass
    frame = pd.DataFrame({name: columns[name].array() for name in (names or list(columns))})
    started = asyncio.get_running_loop().time()
    try:
        predictions = await asyncio.to_thread(deployment.servable.model.native.predict, frame, params)
    except MlflowException as exc:
        raise V2RequestError(exc.message) from exc
    except Exception as exc:  # the model failed on this input: a 400, as MLflow's scoring server answers
        raise V2RequestError(f"the model failed on this input: {type(exc).__name__}: {exc}") from exc
    seconds = asyncio.get_running_loop().time() - started
    return V2Prediction(_as_array(predictions), rows, seconds)


def _as_array(predictions: Any) -> np.ndarray:
    if isinstance(predictions, pd.DataFrame | pd.Series):
        return np.asarray(predictions.to_numpy())
    return np.asarray(predictions)
