"""Tree models on the lean path: XGBoost and LightGBM versions (both the scikit-learn wrappers and
native boosters), and scikit-learn tree regressors under ``precision: exact``.

The signature's columns are decoded straight into a float64 matrix (typed columns as the numbers
MLflow's DataFrame would hold) and batched into the predictor ``loader.trees.choice`` proved exact
at deploy against MLflow's own answer. No DataFrame and no ``DMatrix`` per request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lockgate.gateway.serving.typed_request import Column, TypedFrameParser, TypedRows
from lockgate.loader.trees.choice import ENGINE, TreeVerdict, choose
from lockgate.loader.trees.models import Predict, describe
from lockgate.loader.trees.table import EngineUnavailable

# The flavors whose versions take this path when their signature is lean-parsable.
TREE_FLAVORS = ("xgboost", "lightgbm")
# MLflow column type -> the dtype MLflow's schema enforcement gives the model's DataFrame.
_FRAME_DTYPES: dict[str, Any] = {
    "double": np.float64,
    "float": np.float32,
    "long": np.int64,
    "integer": np.int32,
    "boolean": np.bool_,
}
_INTEGER_KINDS = ("long", "integer", "boolean")


def tree_flavor(flavors: dict[str, Any]) -> str | None:
    return next((name for name in TREE_FLAVORS if name in flavors), None)


def path_name(verdict: TreeVerdict, library: str) -> str:
    """``trees`` when lockgate's engine serves, else the library's own lean predict."""
    return "trees" if verdict.engine == ENGINE else library


def engine_refusal(verdict: TreeVerdict) -> str | None:
    """Why lockgate's engine does not serve, when it does not (the path's ``reason``)."""
    if verdict.engine == ENGINE:
        return None
    return f"the tree engine does not serve: {verdict.refused.get(ENGINE, 'not a candidate')}"


def pyfunc_reference(pyfunc: Any, columns: tuple[Column, ...]) -> Predict:
    """MLflow's own answer for a float64 matrix: its pyfunc, on the DataFrame its schema
    enforcement would build (the reference every engine is checked against)."""
    names = [c.name for c in columns]
    dtypes = [_FRAME_DTYPES[c.kind] for c in columns]

    def reference(matrix: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame({n: matrix[:, i].astype(d) for i, (n, d) in enumerate(zip(names, dtypes, strict=True))})
        return np.asarray(pyfunc.predict(frame))

    return reference


def typed_matrix(parser: TypedFrameParser) -> Callable[[TypedRows], np.ndarray]:
    """Typed rows as the float64 matrix of the values MLflow's DataFrame holds (a ``float``
    column is float32 there, so its values are rounded to float32 first)."""
    float32_columns = [i for i, spec in enumerate(parser.specs) if spec.kind == "float"]

    def to_matrix(rows: TypedRows) -> np.ndarray:
        matrix = np.empty((len(rows), len(rows.columns)), dtype=np.float64)
        for i, values in enumerate(rows.columns):
            matrix[:, i] = values
        for i in float32_columns:
            matrix[:, i] = matrix[:, i].astype(np.float32)
        return matrix

    return to_matrix


def integer_columns(columns: tuple[Column, ...]) -> frozenset[int]:
    return frozenset(i for i, c in enumerate(columns) if c.kind in _INTEGER_KINDS)


def tree_predictor(
    raw: Any,
    reference: Predict,
    check_rows: np.ndarray,
    columns: tuple[Column, ...],
    *,
    sklearn_native: Predict | None = None,
    use_engine: bool = True,
    derived: Path | None = None,
) -> tuple[Predict | None, TreeVerdict]:
    """The predictor proven exact for ``raw`` (None: nothing but MLflow's own code is), and why."""
    try:
        model = describe(raw, sklearn_native)
    except EngineUnavailable as exc:
        return None, TreeVerdict(engine=None, refused={"model": str(exc)}, model=type(raw).__name__)
    names = getattr(raw, "feature_names", None) or getattr(raw, "feature_names_in_", None)
    if model.library == "xgboost" and names is not None and list(names) != [c.name for c in columns]:
        # XGBoost checks the DataFrame's column names against its own: the lean matrix cannot.
        why = "the model's feature names differ from the signature's columns"
        return None, TreeVerdict(engine=None, refused={"model": why}, model=model.name)
    cache = derived / "trees" if derived is not None else None
    return choose(model, reference, check_rows, integer_columns(columns), use_engine=use_engine, reference_cache=cache)
