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

A tensor signature takes its tensors as they are: one input for a single (possibly unnamed)
tensor spec, one input per name otherwise, reshaped to the request's shape, with MLflow's
pyfunc enforcing dtype and shape. Each model output is one V2 output, with its full shape.

Outputs: ``predict`` (what ``/invocations`` answers), and ``predict_proba`` for an sklearn
classifier that has it (the class probabilities, ``[N, classes]``). As MLServer's sklearn
runtime does, a request without ``outputs`` gets ``predict``; it names ``predict_proba`` (alone
or with ``predict``) to get the probabilities, computed on the same schema-enforced input.

Request ``parameters`` other than the protocol's own go to the model as MLflow params.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from lockgate.gateway import tracing
from lockgate.gateway.protocols.v2.outputs import (
    PREDICT,
    PROBABILITIES,
    requested_outputs,
    tensor_output_names,
    tensor_schema,
)
from lockgate.gateway.protocols.v2.plain import PlainColumns
from lockgate.gateway.protocols.v2.tensors import Tensor, V2Request, V2RequestError, brief
from lockgate.gateway.serving.classifier import probability_model
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.logged_rows import LoggedRows, enforced_inputs, lean_inputs, lean_logged
from lockgate.gateway.serving.scoring import observe_pyfunc_call
from lockgate.gateway.serving.shadow import ShadowCopy
from lockgate.gateway.serving.typed_request import TypedFrameParser, TypedRows

# Request parameters that belong to the protocol (and its binary extension), not to the model.
_PROTOCOL_PARAMETERS = frozenset({"content_type", "binary_data_output", "headers", "timeout", "priority"})


@dataclass
class V2Prediction:
    outputs: dict[str, np.ndarray]  # in the order the request asked for them
    rows: int
    predict_seconds: float
    # What the model saw, kept for the inference log (read only when the route is logged): the
    # lean path's input (with its parser), a frame MLflow's pyfunc enforced (with the schema), or
    # a tensor model's data.
    model_input: Any = None
    parser: NumericFrameParser | TypedFrameParser | None = None
    schema: Any = None

    def logged(self) -> LoggedRows | None:
        data = self.model_input
        if data is None:
            return None
        inputs: Callable[[], Any]
        if self.parser is not None:
            if list(self.outputs) == [PREDICT]:
                return lean_logged(self.parser, data, self.outputs[PREDICT])
            inputs = lean_inputs(self.parser, data)
        elif self.schema is not None:
            inputs = enforced_inputs(data, self.schema)
        else:
            inputs = lambda: data  # noqa: E731 - a tensor model's data, as it went in
        outputs = self.outputs
        return LoggedRows(self.rows, inputs, lambda: outputs)


class _Columns:
    """A request's inputs by signature column. For one ``[N, columns]`` matrix the per-column
    tensors are made only if a path asks for them: the lean path takes the matrix whole."""

    def __init__(
        self,
        tensors: dict[str, Tensor] | None,
        rows: int,
        block: np.ndarray | None = None,
        names: list[str] | None = None,
        datatype: str = "FP64",
    ) -> None:
        self._tensors, self.rows, self.block = tensors, rows, block
        self._names, self.datatype = names or [], datatype

    @property
    def tensors(self) -> dict[str, Tensor]:
        if self._tensors is None:
            assert self.block is not None
            block, rows = self.block, self.rows
            self._tensors = {n: Tensor(n, self.datatype, (rows,), block[:, j]) for j, n in enumerate(self._names)}
        return self._tensors


def _columns(request: V2Request, names: list[str]) -> _Columns:
    """The request's tensors as one flat column tensor per signature column, and the row count."""
    inputs = request.inputs
    known = set(names)  # a set: a wide model's 40 inputs must not cost 40 x 40 comparisons
    if len(inputs) == 1 and inputs[0].name not in known and len(inputs[0].shape) == 2 and names:
        matrix = inputs[0]
        rows, width = matrix.shape
        if width != len(names):
            raise V2RequestError(
                f"input {brief(matrix.name)}: shape {list(matrix.shape)} has {width} columns; the signature has "
                f"{len(names)} ({', '.join(names)})"
            )
        return _Columns(None, rows, matrix.array().reshape(rows, width), names, matrix.datatype)
    by_name = {t.name: t for t in inputs}
    if (not names or by_name.keys() == known) and len({t.shape for t in inputs}) == 1:
        return _Columns(by_name, _rows_of(inputs[0]))  # the common case, checked whole: one shape
    given = by_name.keys()
    unknown = [t.name for t in inputs if t.name not in known]
    if unknown and names:
        raise V2RequestError(f"inputs {unknown} are not in the model's signature (inputs: {', '.join(names)})")
    missing = [n for n in names if n not in given]
    if missing:
        raise V2RequestError(f"missing inputs {missing} (the signature's inputs: {', '.join(names)})")
    rows = _rows_of(inputs[0])
    for tensor in inputs:
        if _rows_of(tensor) != rows:
            raise V2RequestError(
                f"input {brief(tensor.name)} has {_rows_of(tensor)} rows, input {brief(inputs[0].name)} has {rows}"
            )
    return _Columns(by_name, rows)


def _rows_of(tensor: Tensor) -> int:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise V2RequestError(f"input {brief(tensor.name)}: a column needs shape [N] or [N, 1], not {list(shape)}")


def model_parameters(request: V2Request) -> dict[str, Any] | None:
    params = {k: v for k, v in request.parameters.items() if k not in _PROTOCOL_PARAMETERS}
    return params or None


_NUMERIC = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"})


def lean_input(deployment: Deployment, given: _Columns) -> Any | None:
    """The lean path's input for these columns, or None when it does not take them."""
    parser = deployment.parser
    rows = given.rows
    if parser is None or deployment.batcher is None or rows == 0:
        return None
    if isinstance(parser, NumericFrameParser):
        numeric_block = given.block is not None and given.datatype in _NUMERIC
        if numeric_block and tuple(parser.columns) == deployment.input_names:
            assert given.block is not None
            # One numeric matrix in signature order: it is the lean path's input already.
            matrix = given.block.astype(np.float64)
            return matrix if np.isfinite(matrix).all() else None
        tensors = given.tensors
        picked = [tensors[n] for n in parser.columns]
        if all(type(t.values) is list for t in picked):
            return _numeric_matrix({t.datatype for t in picked}, [t.as_list() for t in picked], rows, finite=False)
        if not {t.datatype for t in picked} <= _NUMERIC:
            return None  # booleans and strings: MLflow's enforcement names the problem
        matrix = np.column_stack([t.array().astype(np.float64) for t in picked])
        return matrix if np.isfinite(matrix).all() else None
    if isinstance(parser, TypedFrameParser):
        typed = TypedRows([given.tensors[n].as_list() for n in parser.columns], rows)
        return typed if parser.accepts(typed) else None
    return None


def plain_lean_input(deployment: Deployment, plain: PlainColumns) -> Any | None:
    """``lean_input`` for plain columns that ``matches`` the signature, read as they are: the
    same input, without a Tensor per column."""
    parser = deployment.parser
    rows = plain.rows
    if parser is None or deployment.batcher is None or not rows:
        return None
    if isinstance(parser, NumericFrameParser):
        return _numeric_matrix(*plain.columns(parser.columns), rows, finite=plain.finite)
    if isinstance(parser, TypedFrameParser):
        typed = TypedRows(plain.columns(parser.columns)[1], rows)
        return typed if parser.accepts(typed) else None
    return None


def _numeric_matrix(datatypes: set[str], columns: list[list[Any]], rows: int, *, finite: bool) -> np.ndarray | None:
    """The float64 matrix of numeric columns given as lists (values already checked against
    their datatypes), or None for booleans, strings or a value float64 cannot hold. ``finite``:
    the codec guarantees finite values (JSON), so the check is skipped."""
    if not datatypes <= _NUMERIC:
        return None  # booleans and strings: MLflow's enforcement names the problem
    if rows == 1:  # the latency case: one row of floats, as /invocations builds it
        matrix = np.array([[values[0] for values in columns]], dtype=np.float64)
    else:  # one pass over the whole request, column after column, then turned to rows
        flat = np.fromiter(chain.from_iterable(columns), np.float64, rows * len(columns))
        matrix = flat.reshape(len(columns), rows).T.copy()
    return matrix if finite or np.isfinite(matrix).all() else None


async def infer(deployment: Deployment, request: V2Request) -> V2Prediction:
    wanted = requested_outputs(deployment, request)
    if tensor_schema(deployment):
        return await _infer_tensors(deployment, request, wanted)
    names = list(deployment.input_names)
    plain = request.plain
    given: _Columns | None
    # Plain columns that are exactly the signature's pass every check _columns makes: the lean
    # path reads them as they are, and Tensors are made only if MLflow's code needs a frame.
    if plain is not None and names and plain.matches(deployment.input_names):
        given, rows = None, plain.rows or 0
        lean_of: Callable[[], Any | None] = partial(plain_lean_input, deployment, plain)
    else:
        given = _columns(request, names)
        rows = given.rows
        lean_of = partial(lean_input, deployment, given)
    params = model_parameters(request)
    outputs: dict[str, np.ndarray] = {}
    seconds = 0.0
    frame = None
    model_input: Any = None
    parser: NumericFrameParser | TypedFrameParser | None = None
    if PREDICT in wanted:
        lean = lean_of() if params is None else None
        if lean is not None:
            assert deployment.batcher is not None and deployment.parser is not None
            try:
                predictions, seconds = await deployment.batcher.predict(lean)
                outputs[PREDICT] = np.asarray(predictions)
                model_input, parser = lean, deployment.parser
            except Exception:  # as on /invocations: MLflow's code, on the same model, names the problem
                pass
        if PREDICT not in outputs:
            frame = _frame(given or _columns(request, names), names)
            predictions, seconds = await _timed(deployment, len(frame), _observed_predict, deployment, frame, params)
            outputs[PREDICT] = _as_array(predictions)
    if PROBABILITIES in wanted:
        if frame is None:
            frame = _frame(given or _columns(request, names), names)
        probabilities, proba_seconds = await _timed(deployment, len(frame), _probabilities, deployment, frame)
        outputs[PROBABILITIES] = probabilities
        seconds += proba_seconds
    if model_input is None and frame is not None:
        return V2Prediction(
            {name: outputs[name] for name in wanted}, rows, seconds, frame, None, deployment.input_schema
        )
    return V2Prediction({name: outputs[name] for name in wanted}, rows, seconds, model_input, parser)


def shadow_copy(request: V2Request, prediction: V2Prediction, size: int = 0) -> ShadowCopy:
    """A copy of an answered V2 request for the endpoint's shadow: its first output (``predict``
    unless the request asked otherwise) is what the shadow's answer is compared with."""
    first = next(iter(prediction.outputs))

    async def run(shadow: Deployment) -> Any:
        answer = await infer(shadow, request)
        return answer.outputs[first]

    return ShadowCopy(run, lambda: prediction.outputs[first], size)


def _frame(given: _Columns, names: list[str]) -> pd.DataFrame:
    columns = given.tensors
    return pd.DataFrame({name: columns[name].array() for name in (names or list(columns))})


def _observed_predict(deployment: Deployment, data: Any, params: dict[str, Any] | None) -> Any:
    """The model's pyfunc predict (a frame, or a tensor model's tensors), counted for skew as
    MLflow's scoring path counts it."""
    predictions = deployment.servable.model.native.predict(data, params)
    observe_pyfunc_call(deployment, data, predictions)
    return predictions


def _probabilities(deployment: Deployment, frame: pd.DataFrame) -> np.ndarray:
    """The classifier's ``predict_proba`` on the input MLflow's pyfunc would hand its ``predict``."""
    from mlflow.models.utils import _enforce_schema

    estimator = probability_model(deployment)
    assert estimator is not None  # requested_outputs offered predict_proba only for such a model
    enforced = _enforce_schema(frame, deployment.input_schema) if deployment.input_schema is not None else frame
    return np.asarray(estimator.predict_proba(enforced), dtype=np.float64)


async def _infer_tensors(deployment: Deployment, request: V2Request, wanted: list[str]) -> V2Prediction:
    """A tensor-signature model: the request's tensors, shaped, into MLflow's pyfunc predict."""
    schema = deployment.input_schema
    specs = list(schema.inputs)
    tensors = request.inputs
    if len(specs) == 1 and not schema.has_input_names():
        if len(tensors) != 1:
            raise V2RequestError(f"this model takes one tensor input, not {len(tensors)}")
        data: Any = _shaped(tensors[0])
    else:
        names = [str(n) for n in schema.input_names()]
        given = {t.name: t for t in tensors}
        unknown, missing = sorted(set(given) - set(names)), [n for n in names if n not in given]
        if unknown or missing:
            raise V2RequestError(
                f"this model's tensor inputs are {', '.join(names)}"
                + (f"; unknown inputs {unknown}" if unknown else "")
                + (f"; missing inputs {missing}" if missing else "")
            )
        data = {name: _shaped(given[name]) for name in names}
    rows = int(tensors[0].shape[0]) if tensors and tensors[0].shape else 0
    predictions, seconds = await _timed(
        deployment, rows, _observed_predict, deployment, data, model_parameters(request)
    )
    if isinstance(predictions, dict):
        produced = {str(k): np.asarray(v) for k, v in predictions.items()}
    else:
        produced = {(tensor_output_names(deployment) or (PREDICT,))[0]: _as_array(predictions)}
    missing_outputs = [n for n in wanted if n not in produced]
    if missing_outputs:
        raise V2RequestError(f"the model did not produce outputs {missing_outputs} (it produced {sorted(produced)})")
    return V2Prediction({name: produced[name] for name in wanted}, rows, seconds, data)


def _shaped(tensor: Tensor) -> np.ndarray:
    array = tensor.array()
    try:
        return array.reshape(tensor.shape)
    except ValueError as exc:
        raise V2RequestError(
            f"input {brief(tensor.name)}: {array.size} values do not fill shape {list(tensor.shape)}"
        ) from exc


async def _timed(deployment: Deployment, rows: int, function: Any, *args: Any) -> tuple[Any, float]:
    """Run one of ``deployment``'s model calls on ``rows`` rows off the event loop, and count it
    in its rows per predict call; its errors are the request's (400), as on /invocations."""
    started = asyncio.get_running_loop().time()
    try:
        with tracing.child("predict"):
            result = await asyncio.to_thread(function, *args)
    except MlflowException as exc:
        raise V2RequestError(exc.message) from exc
    except V2RequestError:
        raise
    except Exception as exc:  # the model failed on this input: a 400, as MLflow's scoring server answers
        raise V2RequestError(f"the model failed on this input: {type(exc).__name__}: {exc}") from exc
    deployment.predict_sizes.record(rows)
    return result, asyncio.get_running_loop().time() - started


def _as_array(predictions: Any) -> np.ndarray:
    if isinstance(predictions, pd.DataFrame | pd.Series):
        return np.asarray(predictions.to_numpy())
    return np.asarray(predictions)
