"""What a protocol hands the inference log for one answered request: the rows the model saw and
what it answered, as references, turned into columns only off the request path.

Every codec ends in one of three model inputs: the lean path's float64 matrix (columns named by
its parser), its ``TypedRows`` (made a frame by its parser, with MLflow's dtypes), or the
DataFrame MLflow's schema enforcement handed a pyfunc. Whatever the protocol, the same rows give
the same columns: each input under its signature name and type. Predictions become
``lockgate_prediction`` (``predict``, what ``/invocations`` answers), and one
``lockgate_prediction_<output>`` column per other output (V2's ``predict_proba``, a tensor
model's named outputs, a pyfunc's DataFrame columns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.typed_request import TypedFrameParser, TypedRows

PREDICTION = "lockgate_prediction"


@dataclass(slots=True)
class LoggedRows:
    """What one answered request hands the log: ``inputs()`` gives a DataFrame (or columns by
    name) and ``outputs()`` the answer, by output name; neither is called on the request path.
    The lean numeric path hands over its float64 ``matrix`` (columns ``names``) and 1-D
    ``predictions`` as they are instead: the log stacks thousands of those in one call. (Not
    frozen: a frozen dataclass costs microseconds to make, and this is made per request.)"""

    rows: int
    inputs: Callable[[], pd.DataFrame | Mapping[str, Any]] | None = None
    outputs: Callable[[], Mapping[str, Any]] | None = None
    matrix: np.ndarray | None = None
    names: tuple[str, ...] = ()
    predictions: np.ndarray | None = None

    def input_data(self) -> Any:
        if self.inputs is not None:
            return self.inputs()
        assert self.matrix is not None
        return {name: self.matrix[:, j] for j, name in enumerate(self.names)}

    def output_data(self) -> Mapping[str, Any]:
        if self.outputs is not None:
            return self.outputs()
        return {"predict": self.predictions}


def lean_logged(parser: NumericFrameParser | TypedFrameParser, lean: Any, predictions: Any) -> LoggedRows:
    """What the lean path hands the log: its parsed input and its answer."""
    rows = len(lean)
    if (
        type(lean) is np.ndarray
        and type(predictions) is np.ndarray
        and predictions.ndim == 1
        and len(predictions) == rows
        and isinstance(parser, NumericFrameParser)
    ):
        return LoggedRows(rows, None, None, lean, parser.columns, predictions)
    return LoggedRows(rows, lean_inputs(parser, lean), single_output(predictions))


def lean_inputs(parser: NumericFrameParser | TypedFrameParser, lean: Any) -> Callable[[], Any]:
    """The lean path's input by column name: a float64 matrix's columns, or typed rows made the
    frame MLflow's schema enforcement would give (its dtypes)."""
    if isinstance(lean, TypedRows) and isinstance(parser, TypedFrameParser):
        return lambda: parser.frame(lean)
    columns = parser.columns
    return lambda: {name: lean[:, j] for j, name in enumerate(columns)}


def enforced_inputs(frame: Any, schema: Any) -> Callable[[], Any]:
    """A frame handed to MLflow's pyfunc, as its schema enforcement types it: the signature's
    names and types, as the lean path logs them. A frame enforcement refuses is logged as sent."""

    def inputs() -> Any:
        if schema is None or not isinstance(frame, pd.DataFrame):
            return frame
        from mlflow.models.utils import _enforce_schema

        try:
            return _enforce_schema(frame, schema)
        except Exception:
            return frame

    return inputs


def single_output(predictions: Any) -> Callable[[], dict[str, Any]]:
    """A model's one answer (``predict``), as the log names it."""
    return lambda: {"predict": predictions}


def input_columns(inputs: Any, rows: int) -> dict[str, Any]:
    """Each input column as a 1-D sequence of ``rows`` values (a tensor's row is kept as a list;
    an unnamed tensor is the column ``input``)."""
    if isinstance(inputs, np.ndarray):
        inputs = {"input": inputs}
    return {str(name): row_values(values, rows, str(name)) for name, values in inputs.items()}


def output_columns(outputs: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """``lockgate_prediction`` for ``predict`` (what ``/invocations`` answers);
    ``lockgate_prediction_<name>`` for any other output, and for each column of a DataFrame answer."""
    out: dict[str, Any] = {}
    for name, values in outputs.items():
        if isinstance(values, pd.DataFrame):
            for column in values.columns:
                out[f"{PREDICTION}_{column}"] = row_values(values[column], rows, str(column))
            continue
        key = PREDICTION if name == "predict" else f"{PREDICTION}_{name}"
        out[key] = row_values(values, rows, name)
    return out


def row_values(values: Any, rows: int, name: str) -> Any:
    """``values`` as ``rows`` entries: a 1-D array or list as it is, a ``[rows, 1]`` column
    flattened, a wider array one list per row."""
    if isinstance(values, pd.Series):
        array: Any = values.to_numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        array = np.asarray(values, dtype=object if _ragged(values) else None)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0 or len(array) != rows:
        raise ValueError(f"{name}: {len(array) if array.ndim else 'a scalar'} values for {rows} rows")
    if array.ndim > 1:
        return [row.tolist() for row in array]
    return array


def _ragged(values: Any) -> bool:
    return isinstance(values, list) and any(isinstance(v, list) for v in values[:1])
