"""Which path serves a deployment, decided once at deploy time.

- ``onnx``: an sklearn model whose skl2onnx conversion passed the equivalence check. A
  conversion not yet cached for this weights commit runs in the background (a 300-tree forest
  takes seconds): the native estimator serves until the checked graph takes over, so the
  conversion never delays readiness.
- ``sklearn``: the native estimator, called with a matrix (or a DataFrame when it was fitted
  on one), when the conversion failed or is turned off.
- ``trees``: an XGBoost or LightGBM model, or an sklearn tree regressor under ``precision:
  exact``, served by lockgate's tree engine (``loader/trees``), proven bit-identical to MLflow's
  answer at deploy on the check rows and on rows at every split threshold.
- ``xgboost`` / ``lightgbm``: the library's own predict called on a matrix, when the engine is
  refused (the check says why) or slower for the batch size.
- ``mlflow``: everything else (custom pyfunc models, signatures lean parsing does not cover):
  every request goes through MLflow's own scoring code.

All but the last get lean request parsing and adaptive batching; a request the lean parser
does not cover still goes through MLflow's code, against the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.gateway.serving.tree_serving import (
    engine_refusal,
    path_name,
    pyfunc_reference,
    tree_flavor,
    tree_predictor,
    typed_matrix,
)
from lockgate.gateway.serving.typed_request import TYPED_KINDS, Column, TypedFrameParser, TypedRows
from lockgate.loader.baseline import signature_columns
from lockgate.loader.model_loader import ServableModel
from lockgate.loader.onnx.fast_path import build_onnx_predictor, graph_from_record, has_cached_conversion
from lockgate.loader.trees.models import describe, is_tree_model
from lockgate.loader.trees.record import has_record, recorded_engine

# Flavors whose predict treats rows independently, so merging requests cannot change an answer.
ROW_WISE_PATHS = frozenset({"onnx", "sklearn", "trees", "xgboost", "lightgbm"})


@dataclass
class ServingPath:
    name: str
    reason: str | None  # why the ONNX fast path does not serve, when it does not
    columns: tuple[str, ...] | None = None  # the signature's columns, when lean parsing applies
    # A float64 matrix (all-double signatures), or TypedRows when ``typed_parser`` is set.
    predict: Callable[[Any], np.ndarray] | None = None
    check: dict[str, Any] = field(default_factory=dict)
    # A faster path is being prepared in the background (an ONNX conversion, the tree engine check).
    onnx_pending: bool = False
    # Set when the signature has typed (not all double) columns: the parser checked at deploy.
    typed_parser: TypedFrameParser | None = None
    # Whether the native estimator has ``predict_proba``, when a graph serves before the native
    # model is loaded (``graph_first_path``); None: ask the native model.
    probabilities: bool | None = None

    @property
    def row_wise(self) -> bool:
        return self.name in ROW_WISE_PATHS


def signature_columns_typed(signature: dict[str, Any] | None) -> tuple[tuple[Column, ...] | None, str | None]:
    """The signature's required named columns with their MLflow types, or None and why not."""
    if not signature or not signature.get("inputs"):
        return None, "the model has no signature"
    columns = signature_columns(signature)
    specs = _json_list(signature["inputs"])
    if not columns or len(columns) != len(specs):
        return None, "the signature's inputs are not all named columns"
    if any(isinstance(s, dict) and s.get("required") is False for s in specs):
        return None, "the signature has optional columns"
    names = tuple(name for name, _ in columns)
    if len(set(names)) != len(names):
        return None, "the signature repeats a column name"
    return tuple(Column(name, kind) for name, kind in columns), None


def numeric_columns(signature: dict[str, Any] | None) -> tuple[tuple[str, ...] | None, str | None]:
    """The signature's column names when every input is a required ``double`` column."""
    columns, why_not = signature_columns_typed(signature)
    if columns is None:
        return None, why_not
    kinds = sorted({c.kind for c in columns if c.kind != "double"})
    if kinds:
        return None, f"the signature has {', '.join(kinds)} columns; lean parsing covers double columns"
    return tuple(c.name for c in columns), None


def _json_list(raw: Any) -> list[Any]:
    value = orjson.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, list) else []


def _check_rows(servable: ServableModel, columns: tuple[str, ...], sample: pd.DataFrame | None) -> np.ndarray:
    """The input example plus the training sample, as float64 rows in signature order."""
    blocks = []
    for frame in (servable.model.input_example, sample):
        if isinstance(frame, pd.DataFrame) and set(columns) <= set(frame.columns):
            try:
                block = frame[list(columns)].to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                continue
            blocks.append(block[~np.isnan(block).any(axis=1)])
    return np.concatenate(blocks) if blocks else np.empty((0, len(columns)))


def _native_predict(estimator: Any) -> Callable[[np.ndarray], np.ndarray]:
    names = getattr(estimator, "feature_names_in_", None)
    # MLflow hands sklearn a DataFrame, whose values are column-major. Giving the estimator the
    # same memory layout keeps BLAS's summation order, and so the last bits of every float,
    # identical to `mlflow models serve`.
    if names is None:
        return lambda matrix: np.asarray(estimator.predict(np.asfortranarray(matrix)))
    feature_names = list(names)
    # Fitted on a DataFrame: give it one, so sklearn checks the names and does not warn per call.
    return lambda matrix: np.asarray(
        estimator.predict(pd.DataFrame(np.asfortranarray(matrix), columns=feature_names, copy=False))
    )


TYPED_NATIVE = "typed columns: lean parsing and batching into the native estimator"


def _typed_path(
    servable: ServableModel,
    parser: TypedFrameParser,
    options: ServingOptions,
    sample: pd.DataFrame | None,
    derived: Path,
    *,
    convert: bool,
) -> ServingPath:
    """Typed columns, given the lean parser (its frames checked against MLflow's): a float64
    graph with one input per column where it converts and its labels or values match, else the
    native estimator fed the parser's DataFrames."""
    columns = parser.specs
    estimator = servable.model.native.get_raw_model()
    names = tuple(c.name for c in columns)
    native = ServingPath("sklearn", TYPED_NATIVE, names, lambda rows: np.asarray(estimator.predict(parser.frame(rows))))
    native.typed_parser = parser
    native.check = {"contract": "exact"}  # MLflow hands the estimator the same frame
    if not options.onnx:
        native.reason = f"{TYPED_NATIVE}; the ONNX fast path is turned off for this endpoint"
        return native
    graphs = derived / "onnx"
    if not convert and not has_cached_conversion(graphs):
        native.reason, native.onnx_pending = f"{TYPED_NATIVE}; {ONNX_PENDING}", True
        return native
    predictor, verdict = build_onnx_predictor(
        estimator,
        list(names),
        _typed_check_rows(parser, servable, sample),
        graphs,
        model_dir=servable.directory,
        spinning=options.onnx_spinning,
        exact=options.precision == "exact",
        typed=[(c.name, c.kind) for c in columns],
        native_input=parser.frame,
    )
    if predictor is None:
        native.reason = f"{TYPED_NATIVE}; no ONNX graph: {verdict.reason}"
        native.check = verdict.as_dict() | {"contract": "exact"}
        return native
    path = ServingPath("onnx", None, names, predictor.predict, verdict.as_dict() | {"contract": verdict.contract})
    path.typed_parser = parser
    return path


def _typed_check_rows(parser: TypedFrameParser, servable: ServableModel, sample: pd.DataFrame | None) -> TypedRows:
    """The input example plus the training sample, as typed rows the lean parser accepts."""
    parts = []
    for frame in (servable.model.input_example, sample):
        if not isinstance(frame, pd.DataFrame) or not set(parser.columns) <= set(frame.columns):
            continue
        block = frame[list(parser.columns)].dropna()
        if block.empty:
            continue
        split = orjson.loads(block.to_json(orient="split", index=False, double_precision=15))
        rows = parser.parse(orjson.dumps({"dataframe_split": split}))
        if rows is not None:
            parts.append(rows)
    return TypedRows.concat(parts) if parts else TypedRows([[] for _ in parser.columns], 0)


ONNX_PENDING = "converting to ONNX in the background; the native estimator serves meanwhile"
TREES_PENDING = "checking the tree engine in the background; the native estimator serves meanwhile"


def _lean_columns(
    servable: ServableModel,
    reference_frame: Callable[[bytes], pd.DataFrame] | None,
    typed_parser: TypedFrameParser | None,
) -> tuple[tuple[str, ...] | None, TypedFrameParser | None, ServingPath | None]:
    """What the lean path reads for this signature: its ``double`` columns, or a typed parser
    (learned against MLflow's parser, unless given), or neither and the ``mlflow`` path saying why."""
    signature = servable.resolved.signature or servable.model.metadata.signature
    columns, _ = numeric_columns(signature)
    if columns is not None:
        return columns, None, None
    typed, why_not_typed = signature_columns_typed(signature)
    if typed is None:
        return None, None, ServingPath("mlflow", why_not_typed)
    uncovered = sorted({c.kind for c in typed if c.kind not in TYPED_KINDS})
    if uncovered:
        covered = ", ".join(sorted(TYPED_KINDS))
        why = f"the signature has {', '.join(uncovered)} columns; lean parsing covers {covered}"
        return None, None, ServingPath("mlflow", why)
    if typed_parser is None:
        if reference_frame is None:
            return None, None, ServingPath("mlflow", "typed lean parsing needs MLflow's parser as its reference")
        typed_parser, why_not = TypedFrameParser.learn(typed, reference_frame, servable.model.input_example)
        if typed_parser is None:
            return None, None, ServingPath("mlflow", f"typed lean parsing is off: {why_not}")
    return None, typed_parser, None


def graph_first_path(
    servable: ServableModel,
    options: ServingOptions,
    sample: pd.DataFrame | None,
    derived: Path,
    *,
    reference_frame: Callable[[bytes], pd.DataFrame] | None = None,
) -> tuple[ServingPath | None, str]:
    """The ONNX path for a version whose native model is not loaded yet: its cached graph,
    re-checked on the same rows against the native answers its check recorded
    (``loader.onnx.fast_path.graph_from_record``). None and why, when that cannot be done: the
    caller then loads the native model and calls ``choose_serving_path``."""
    if not options.onnx:
        return None, "the ONNX fast path is turned off for this endpoint"
    flavors = servable.model.metadata.flavors
    library = tree_flavor(flavors) if "sklearn" not in flavors else "sklearn"
    trees = derived / "trees"
    if library is not None and (library != "sklearn" or options.precision == "exact") and has_record(trees):
        path, why_not = _recorded_tree_path(servable, library, trees, reference_frame)
        if path is not None or library != "sklearn":
            return path, why_not
    if "sklearn" not in flavors:
        return None, "not an sklearn model"
    columns, parser, refusal = _lean_columns(servable, reference_frame, None)
    if refusal is not None:
        return None, refusal.reason or "no lean path"
    typed = None
    if parser is None:
        assert columns is not None
        rows: Any = _check_rows(servable, columns, sample)
    else:
        rows = _typed_check_rows(parser, servable, sample)
        typed = [(c.name, c.kind) for c in parser.specs]
        columns = tuple(c.name for c in parser.specs)
    recorded, why_not = graph_from_record(
        derived / "onnx", rows, exact=options.precision == "exact", spinning=options.onnx_spinning, typed=typed
    )
    if recorded is None:
        return None, why_not
    predictor, verdict = recorded.predictor, recorded.verdict
    if parser is None:
        # A float32 graph hands rows beyond float32's range to the native estimator: loaded then.
        native = cache(lambda: _native_predict(servable.model.native.get_raw_model()))

        def beyond_float32(matrix: np.ndarray) -> np.ndarray:
            return native()(matrix)

        predictor.native = beyond_float32
    path = ServingPath("onnx", None, columns, predictor.predict, verdict.as_dict() | {"contract": verdict.contract})
    path.typed_parser = parser
    path.probabilities = recorded.record.probabilities
    return path, ""


def _recorded_tree_path(
    servable: ServableModel, library: str, folder: Path, reference_frame: Callable[[bytes], pd.DataFrame] | None
) -> tuple[ServingPath | None, str]:
    """The tree engine on record for this version, re-checked against the MLflow answers its
    check kept (``loader/trees/record.py``), serving before the model itself is loaded. The
    engine then serves every batch size; rows beyond float32 wait for the model to load."""
    columns, parser, refusal = _lean_columns(servable, reference_frame, None)
    if refusal is not None:
        return None, refusal.reason or "no lean path"
    kernel, verdict, why_not = recorded_engine(folder)
    if kernel is None:
        return None, why_not
    names = tuple(spec.name for spec in parser.specs) if parser is not None else tuple(columns or ())
    if kernel.feed.rounds_to_float32:
        native = cache(lambda: _model_predict(servable, library))

        def beyond(matrix: np.ndarray) -> np.ndarray:
            return native()(matrix)

        kernel.beyond = beyond
    predict: Callable[[Any], np.ndarray] = kernel.predict
    if parser is not None:
        to_matrix = typed_matrix(parser)

        def predict(rows: TypedRows) -> np.ndarray:
            return kernel.predict(to_matrix(rows))

    check = verdict | {"large_batches": None, "large_from_rows": None, "from_record": True}
    path = ServingPath("trees", None, names, predict, check)
    path.typed_parser = parser
    path.probabilities = False  # V2 offers predict_proba for sklearn classifiers, never tree regressors
    return path, ""


def _model_predict(servable: ServableModel, library: str) -> Callable[[np.ndarray], np.ndarray]:
    """The model's own lean predict, loading the model (rows the engine hands back to it)."""
    native = servable.model.native
    if library == "sklearn":
        return _native_predict(native)
    return describe(native.get_raw_model()).native


def choose_serving_path(
    servable: ServableModel,
    options: ServingOptions,
    sample: pd.DataFrame | None,
    derived: Path,
    *,
    convert: bool = True,
    reference_frame: Callable[[bytes], pd.DataFrame] | None = None,
    typed_parser: TypedFrameParser | None = None,
) -> ServingPath:
    """The path for a deployment (``derived``: the version's own directory for derived
    artifacts, from ``ModelCache.derived_dir``).

    A typed signature's lean parser is learned against ``reference_frame`` (MLflow's parser),
    unless ``typed_parser`` was learned already for this deployment: the background conversion
    reuses the one that serves.

    With ``convert=False`` an ONNX graph is used only if this weights commit's conversion is
    already cached; otherwise the native path is returned with ``onnx_pending`` set; the app
    converts in the background once it serves, and ``Deployment.upgrade_path`` adopts the
    checked graph."""
    flavors = servable.model.metadata.flavors
    library = tree_flavor(flavors)
    if library is not None and "sklearn" not in flavors:
        return _tree_library_path(
            servable, library, options, sample, derived, reference_frame=reference_frame, typed_parser=typed_parser
        )
    if "sklearn" not in flavors:
        return ServingPath("mlflow", "the ONNX fast path covers sklearn models; this one is served by MLflow's pyfunc")
    columns, typed_parser, refusal = _lean_columns(servable, reference_frame, typed_parser)
    if refusal is not None:
        return refusal
    if typed_parser is not None:
        return _typed_path(servable, typed_parser, options, sample, derived, convert=convert)
    assert columns is not None
    estimator = servable.model.native.get_raw_model()
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and list(names) != list(columns):
        return ServingPath("mlflow", "the estimator's feature names differ from the signature's columns")
    native_predict = _native_predict(estimator)
    native = ServingPath("sklearn", None, columns, native_predict)
    native.check = {"contract": "exact"}  # the native estimator is MLflow's own answer
    refused_trees = None
    if options.precision == "exact" and options.onnx and is_tree_model(estimator):
        # A tree regressor's float32 graph is within 1e-5, not exact: the tree engine is. Its
        # check (a second or two for a deep forest) runs in the background, as a conversion does.
        if not convert:
            native.reason, native.onnx_pending = TREES_PENDING, True
            return native
        rows = _check_rows(servable, columns, sample)
        specs = tuple(Column(name, "double") for name in columns)
        tree_predict, trees = tree_predictor(
            estimator, native_predict, rows, specs, sklearn_native=native_predict, derived=derived
        )
        if tree_predict is not None:
            name, why_not = path_name(trees, "sklearn"), engine_refusal(trees)
            return ServingPath(name, why_not, columns, tree_predict, trees.as_dict())
        refused_trees = "; ".join(f"{name}: {why}" for name, why in trees.refused.items())
    if not options.onnx:
        native.reason = "the ONNX fast path is turned off for this endpoint"
        return native
    graphs = derived / "onnx"
    if not convert and not has_cached_conversion(graphs):
        native.reason = ONNX_PENDING
        native.onnx_pending = True
        return native
    rows = _check_rows(servable, columns, sample)
    # A conversion (not a cached graph) runs in a child process: skl2onnx holds the GIL for
    # seconds on a big forest, and its garbage would stay in this heap.
    predictor, verdict = build_onnx_predictor(
        estimator,
        list(columns),
        rows,
        graphs,
        model_dir=servable.directory,
        spinning=options.onnx_spinning,
        exact=options.precision == "exact",
        native=native.predict,
    )
    if predictor is None:
        native.reason = verdict.reason if refused_trees is None else f"tree engine: {refused_trees}; {verdict.reason}"
        native.check = verdict.as_dict() | {"contract": "exact"}
        return native
    return ServingPath("onnx", None, columns, predictor.predict, verdict.as_dict() | {"contract": verdict.contract})


def _tree_library_path(
    servable: ServableModel,
    library: str,
    options: ServingOptions,
    sample: pd.DataFrame | None,
    derived: Path,
    *,
    reference_frame: Callable[[bytes], pd.DataFrame] | None,
    typed_parser: TypedFrameParser | None,
) -> ServingPath:
    """An XGBoost or LightGBM version: the predictor proven exact against MLflow's pyfunc,
    fed a matrix decoded straight from the request; MLflow's own code when none is."""
    columns, typed_parser, refusal = _lean_columns(servable, reference_frame, typed_parser)
    if refusal is not None:
        return refusal
    specs = typed_parser.specs if typed_parser is not None else tuple(Column(name, "double") for name in columns or ())
    names = tuple(spec.name for spec in specs)
    pyfunc = servable.model.native
    reference, rows = pyfunc_reference(pyfunc, specs), _check_rows(servable, names, sample)
    matrix_predict, verdict = tree_predictor(
        pyfunc.get_raw_model(), reference, rows, specs, use_engine=options.onnx, derived=derived
    )
    if matrix_predict is None:
        refused = "; ".join(f"{name}: {why}" for name, why in verdict.refused.items())
        path = ServingPath("mlflow", f"no lean predictor is exact for this {library} model ({refused})")
        path.check = verdict.as_dict()
        return path
    predict: Callable[[Any], np.ndarray] = matrix_predict
    if typed_parser is not None:
        to_matrix = typed_matrix(typed_parser)

        def predict(rows: TypedRows) -> np.ndarray:
            return matrix_predict(to_matrix(rows))

    path = ServingPath(path_name(verdict, library), engine_refusal(verdict), names, predict, verdict.as_dict())
    path.typed_parser = typed_parser
    return path
