"""The ONNX fast path: an sklearn model converted with skl2onnx and served by onnxruntime.

Exact by default. Each endpoint's numeric contract is declared and checked at deploy:

- **float64 graphs** first (linear models, tree classifiers: skl2onnx and onnxruntime support
  them). Classifiers' labels are bit for bit the native estimator's; regressors are within
  1e-12 relative (a sum in another order), and exactly equal where the check finds them so.
- **float32 graphs** only for regressors that have no float64 kernel in onnxruntime (tree
  ensembles), within 1e-5 relative. A classifier never gets a float32 graph: a label must
  never differ from the native model's, and float32 flips rows within ~1e-7 of a boundary.
  Rows float32 cannot represent (beyond +-3.4e38) are predicted by the native estimator.
- ``precision="exact"`` accepts only a graph that was bit-identical on every checked row;
  otherwise the native estimator serves.

The check runs on the model's input example and a sample of its training rows. The graph is
kept with the version it belongs to (``<cache>/versions/<key>/.lockgate-derived/onnx/``, evicted
with it), one per precision, and so is a failed
verdict, so a model that cannot be converted costs the attempt once. A cached graph is
re-checked on every load: it costs milliseconds and guards against a damaged cache file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from lockgate.loader.atomic_file import write_atomically
from lockgate.loader.onnx.graph_preload import take as take_preloaded
from lockgate.loader.onnx.record import CheckedRows, GraphRecord, graph_digest, read_record, record_check, rows_digest
from lockgate.loader.onnx.session import build_session
from lockgate.loader.parent_watch import child_environment

TOLERANCE = 1e-5  # float32 graphs (tree regressors)
TOLERANCE_FLOAT64 = 1e-12  # float64 graphs of regressors: only the order of a sum differs
VERDICT_VERSION = 2
FLOAT32_MAX = float(np.finfo(np.float32).max)
Precision = str  # "float64" | "float32"


@dataclass
class OnnxVerdict:
    """Whether the fast path serves, and the evidence."""

    ok: bool
    reason: str | None = None
    rows_checked: int = 0
    max_relative_difference: float | None = None
    max_probability_difference: float | None = None
    convert_seconds: float = 0.0
    from_cache: bool = False
    precision: str | None = None  # the graph's: "float64" or "float32"
    exact: bool | None = None  # bit-identical to the native estimator on every checked row
    tolerance: float | None = None  # the relative difference the contract allows (0: none)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def contract(self) -> str:
        """The endpoint's numeric contract in a word: exact, float64 or float32 (with tolerance)."""
        if self.exact:
            return "exact"
        return f"{self.precision}~{self.tolerance:g}" if self.precision else "native"


class ColumnRows(Protocol):
    """Typed rows as the gateway's typed lean parser holds them: one list per signature column."""

    columns: list[list[Any]]

    def __len__(self) -> int: ...


# onnxruntime's input types -> the numpy dtype a typed column is fed as.
_FEED_DTYPES: dict[str, Any] = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(string)": object,
}


@dataclass
class OnnxPredictor:
    """Predicts a float64 matrix (signature column order), or typed ``ColumnRows`` when
    ``typed_inputs`` is set, with onnxruntime, in the exact shape and dtype the native estimator
    returns. A float32 graph hands rows that float32 cannot represent to ``native`` instead of
    answering infinities."""

    session: Any
    input_name: str
    output_shape_tail: tuple[int, ...]
    output_dtype: np.dtype[Any]
    precision: str = "float32"
    native: Any = None  # Callable[[np.ndarray], np.ndarray] for rows beyond float32's range
    typed_inputs: list[tuple[str, Any]] | None = None  # (graph input, feed dtype) per column

    def predict(self, matrix: Any) -> np.ndarray:
        if self.typed_inputs is not None:
            raw = self.session.run(None, typed_feeds(self.typed_inputs, matrix))[0]
            return np.asarray(raw).reshape((len(matrix), *self.output_shape_tail)).astype(self.output_dtype, copy=False)
        if self.precision == "float64":
            return self._run(matrix.astype(np.float64, copy=False))
        beyond = np.abs(matrix) > FLOAT32_MAX
        if self.native is None or not beyond.any():
            return self._run(matrix.astype(np.float32, copy=False))
        rows = beyond.any(axis=1)
        out = np.empty((len(matrix), *self.output_shape_tail), dtype=self.output_dtype)
        out[rows] = np.asarray(self.native(matrix[rows])).reshape((int(rows.sum()), *self.output_shape_tail))
        if not rows.all():
            out[~rows] = self._run(matrix[~rows].astype(np.float32))
        return out

    def _run(self, matrix: np.ndarray) -> np.ndarray:
        raw = self.session.run(None, {self.input_name: matrix})[0]
        shaped = np.asarray(raw).reshape((len(matrix), *self.output_shape_tail))
        return shaped.astype(self.output_dtype, copy=False)


def typed_feeds(inputs: list[tuple[str, Any]], rows: ColumnRows) -> dict[str, np.ndarray]:
    """One [N, 1] array per graph input, from the rows' columns (signature order)."""
    return {
        name: np.array(values, dtype=dtype).reshape(-1, 1)
        for (name, dtype), values in zip(inputs, rows.columns, strict=True)
    }


def _typed_inputs(session: Any, columns: list[str]) -> list[tuple[str, Any]]:
    kinds = {i.name: i.type for i in session.get_inputs()}
    missing = [c for c in columns if c not in kinds or kinds[c] not in _FEED_DTYPES]
    if missing or len(kinds) != len(columns):
        raise ValueError(f"the graph's inputs {sorted(kinds)} do not match the signature's columns")
    return [(c, _FEED_DTYPES[kinds[c]]) for c in columns]


# A typed signature's columns, as (name, MLflow type): one graph input per column.
TypedInputs = list[tuple[str, str]]


def convert_to_bytes(estimator: Any, inputs: int | TypedInputs, precision: str = "float32") -> bytes:
    """``inputs``: the number of float columns of one matrix input, or a typed signature's
    columns (one [N, 1] input each; typed graphs are float64 only)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    tensor = DoubleTensorType if precision == "float64" else FloatTensorType
    if isinstance(inputs, int):
        initial_types = [("input", tensor([None, inputs]))]
    else:
        per_kind = {"double": tensor, "float": tensor, "long": Int64TensorType, "integer": Int64TensorType,
                    "boolean": Int64TensorType, "string": StringTensorType}  # fmt: skip
        initial_types = [(name, per_kind[kind]([None, 1])) for name, kind in inputs]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    graph = convert_sklearn(
        estimator,
        initial_types=initial_types,
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(graph.SerializeToString())


def _check(
    estimator: Any, session: Any, rows: Any, precision: str, typed: _Typed | None = None
) -> tuple[OnnxVerdict, tuple[int, ...], np.dtype[Any], np.ndarray]:
    """The graph against the native estimator on ``rows``; also returns the estimator's answers
    (what ``loader.onnx.record`` keeps, so a restart can re-check the graph without it)."""
    native_input = _as_native_input(estimator, rows) if typed is None else typed.native_input(rows)
    native = np.asarray(estimator.predict(native_input))
    outputs = session.run(None, graph_feeds(session, rows, precision, typed.columns if typed else None))
    classifier = hasattr(estimator, "classes_")
    verdict, tail, dtype = compare_answers(native, outputs[0], precision, classifier=classifier)
    if verdict.ok and classifier and hasattr(estimator, "predict_proba") and len(outputs) > 1:
        expected = np.asarray(estimator.predict_proba(native_input))
        verdict.max_probability_difference = (
            float(np.max(np.abs(np.asarray(outputs[1]) - expected))) if len(rows) else 0.0
        )
    return verdict, tail, dtype, native


def graph_feeds(session: Any, rows: Any, precision: str, typed_columns: TypedInputs | None) -> dict[str, np.ndarray]:
    """What the graph is fed for check rows: one matrix input, or one [N, 1] input per column."""
    if typed_columns is None:
        dtype_in = np.float64 if precision == "float64" else np.float32
        return {session.get_inputs()[0].name: rows.astype(dtype_in)}
    return typed_feeds(_typed_inputs(session, [name for name, _ in typed_columns]), rows)


def compare_answers(
    native: np.ndarray, graph_output: Any, precision: str, *, classifier: bool
) -> tuple[OnnxVerdict, tuple[int, ...], np.dtype[Any]]:
    """The numeric contract, decided on one set of rows: a classifier's labels must be the
    native ones exactly; a regressor's values exactly, or within the precision's tolerance."""
    converted = np.asarray(graph_output).reshape(native.shape)
    tail, dtype = native.shape[1:], native.dtype
    n = len(native)
    identical = json.dumps(converted.astype(dtype).tolist()) == json.dumps(native.tolist())
    if classifier:
        # Labels are compared as JSON, so 1 vs 1.0 counts as different: they must be the same.
        if not identical:
            differing = int(np.sum(converted.astype(dtype) != native))
            return OnnxVerdict(False, f"{differing} of {n} labels differ from the native estimator", n), tail, dtype
        return OnnxVerdict(True, None, n, None, None, precision=precision, exact=True, tolerance=0.0), tail, dtype
    if native.dtype.kind not in "fiu":
        return OnnxVerdict(False, f"predictions of dtype {native.dtype} are not numeric", n), tail, dtype
    tolerance = TOLERANCE_FLOAT64 if precision == "float64" else TOLERANCE
    scale = np.maximum(np.abs(native.astype(np.float64)), np.finfo(np.float64).tiny)
    relative = np.abs(converted.astype(np.float64) - native) / scale
    # An exact zero predicted as 1e-9 is not a relative error of 1e300: compare absolutely near 0.
    relative = np.where(np.abs(native) < tolerance, np.abs(converted - native), relative)
    worst = float(relative.max()) if relative.size else 0.0
    if not np.isfinite(worst) or worst > tolerance:
        reason = f"{precision} graph: max relative difference {worst:.3g} (> {tolerance:g})"
        return OnnxVerdict(False, reason, n, worst, precision=precision), tail, dtype
    verdict = OnnxVerdict(
        True, None, n, worst, precision=precision, exact=identical, tolerance=0.0 if identical else tolerance
    )
    return verdict, tail, dtype


@dataclass(frozen=True)
class _Typed:
    """What a typed conversion needs besides the estimator: the signature's columns and how
    to build the native estimator's input (MLflow's own DataFrame) from check rows."""

    columns: TypedInputs
    native_input: Callable[[Any], Any]


def _as_native_input(estimator: Any, rows: np.ndarray) -> Any:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names))


def has_cached_conversion(folder: Path) -> bool:
    """Whether the version whose graphs live in ``folder`` was converted before (successfully
    or not), by this version of the conversion rules."""
    verdict_file = folder / "verdict.json"
    try:
        return bool(orjson.loads(verdict_file.read_bytes()).get("version") == VERDICT_VERSION)
    except (OSError, orjson.JSONDecodeError):
        return False


def build_onnx_predictor(
    estimator: Any,
    columns: list[str],
    check_rows: Any,  # a float64 matrix, or ColumnRows with ``typed``
    folder: Path,
    *,
    model_dir: Path | None = None,
    spinning: bool = False,
    exact: bool = False,
    native: Any = None,
    typed: TypedInputs | None = None,
    native_input: Callable[[Any], Any] | None = None,
) -> tuple[OnnxPredictor | None, OnnxVerdict]:
    """Convert (or reuse the cached conversion of) ``estimator`` and check it on ``check_rows``
    (float64, signature column order), keeping graphs and verdicts in ``folder``: float64
    first, float32 only for regressors and only without ``exact``. Returns the predictor only
    when a check passes. With ``model_dir`` (the MLflow model directory) the conversion runs in
    a child process. ``native`` predicts the rows a float32 graph cannot represent.

    A typed signature passes ``typed`` (its columns and MLflow types) with ``check_rows`` as
    ``ColumnRows`` and ``native_input`` building the estimator's DataFrame from them: one graph
    input per column, float64 only."""
    typed_spec = _Typed(typed, native_input or (lambda rows: rows)) if typed is not None else None
    if len(check_rows) == 0:
        return None, OnnxVerdict(False, "no rows to check the conversion on (no input example, no training data)")
    verdict_file = folder / "verdict.json"
    cached: dict[str, Any] = {}
    if verdict_file.is_file():
        cached = orjson.loads(verdict_file.read_bytes())
        if cached.get("version") != VERDICT_VERSION:
            cached = {}
        elif not cached.get("converted"):
            return None, OnnxVerdict(False, str(cached.get("reason")), from_cache=True)
    # A precision that could not be converted or run is remembered: not attempted again.
    unavailable = set(cached.get("unavailable", []))
    # A classifier's labels must never be float32's; precision "exact" takes float64 only.
    possible = ["float64"] if hasattr(estimator, "classes_") or typed is not None else ["float64", "float32"]
    precisions = possible[:1] if exact else possible
    reasons: list[str] = []
    last = OnnxVerdict(False, "no precision left to try")
    for precision in precisions:
        if precision in unavailable:
            reasons.append(f"{precision}: not available for {type(estimator).__name__} (cached)")
            continue
        predictor, verdict = _try_precision(
            estimator, columns, check_rows, folder, precision, model_dir=model_dir, spinning=spinning, typed=typed_spec
        )
        if predictor is not None and (verdict.exact or not exact):
            _remember(verdict_file, unavailable, converted=True)
            predictor.native = native
            return predictor, verdict
        if not verdict.rows_checked:
            unavailable.add(precision)
        reasons.append(verdict.reason or f"{precision} graph is not bit-identical (precision: exact)")
        last = verdict
    reason = "; ".join(reasons)
    # "Converted" is about every precision this model could have, not only the ones tried now:
    # an exact endpoint must not mark the version unconvertible for the others.
    converted = bool(set(possible) - unavailable)
    _remember(verdict_file, unavailable, converted=converted, reason=reason)
    last.reason = reason
    return None, last


def _remember(verdict_file: Path, unavailable: set[str], *, converted: bool, reason: str | None = None) -> None:
    record: dict[str, Any] = {"version": VERDICT_VERSION, "converted": converted, "unavailable": sorted(unavailable)}
    if reason is not None:
        record["reason"] = reason
    write_atomically(verdict_file, orjson.dumps(record))


def _try_precision(
    estimator: Any,
    columns: list[str],
    check_rows: Any,
    folder: Path,
    precision: str,
    *,
    model_dir: Path | None,
    spinning: bool,
    typed: _Typed | None = None,
) -> tuple[OnnxPredictor | None, OnnxVerdict]:
    graph_file = folder / f"model-{precision}.onnx"
    inputs: int | TypedInputs = len(columns) if typed is None else typed.columns
    from_cache, convert_seconds = False, 0.0
    try:
        if graph_file.is_file():
            onnx_bytes, from_cache = graph_file.read_bytes(), True
        else:
            started = time.perf_counter()
            if model_dir is None:
                onnx_bytes = convert_to_bytes(estimator, inputs, precision)
                write_atomically(graph_file, onnx_bytes)
            else:
                convert_in_child(model_dir, inputs, graph_file, precision)
                onnx_bytes = graph_file.read_bytes()
            convert_seconds = time.perf_counter() - started
        session = build_session(onnx_bytes, spinning)
    except Exception as exc:
        reason = (
            f"skl2onnx cannot convert {type(estimator).__name__} to a {precision} graph that onnxruntime runs: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        )
        return None, OnnxVerdict(False, reason, convert_seconds=convert_seconds)
    try:
        verdict, tail, dtype, answers = _check(estimator, session, check_rows, precision, typed)
    except Exception as exc:  # the graph runs but not on these inputs: the native estimator serves
        reason = f"the {precision} graph failed on the check rows: {type(exc).__name__}: {str(exc)[:200]}"
        return None, OnnxVerdict(False, reason, convert_seconds=convert_seconds)
    verdict.convert_seconds, verdict.from_cache = convert_seconds, from_cache
    if not verdict.ok:
        return None, verdict
    predictor = predictor_for(session, tail, dtype, precision, typed.columns if typed else None)
    # Kept beside the graph: a restart re-checks it against these answers, before the native
    # estimator is loaded (loader/onnx/record.py).
    record_check(
        folder,
        precision,
        onnx_bytes,
        CheckedRows(check_rows, answers),
        verdict,
        classifier=hasattr(estimator, "classes_"),
        probabilities=callable(getattr(estimator, "predict_proba", None)),
        typed_columns=typed.columns if typed else None,
    )
    return predictor, verdict


def predictor_for(
    session: Any, tail: tuple[int, ...], dtype: np.dtype[Any], precision: str, typed_columns: TypedInputs | None
) -> OnnxPredictor:
    predictor = OnnxPredictor(session, session.get_inputs()[0].name, tail, dtype, precision)
    if typed_columns is not None:
        predictor.typed_inputs = _typed_inputs(session, [name for name, _ in typed_columns])
    return predictor


@dataclass
class RecordedGraph:
    """A cached graph re-checked against its record: what serves a version before its native
    estimator is loaded."""

    predictor: OnnxPredictor
    verdict: OnnxVerdict
    record: GraphRecord


def graph_from_record(
    folder: Path, check_rows: Any, *, exact: bool, spinning: bool, typed: TypedInputs | None = None
) -> tuple[RecordedGraph | None, str]:
    """The version's cached graph, re-checked on ``check_rows`` against the native answers its
    check recorded (``loader/onnx/record.py``), without the native estimator. The precisions
    are tried in ``build_onnx_predictor``'s order. Returns None and why when no graph can be
    served this way: the caller loads the native estimator and checks against it."""
    if not has_cached_conversion(folder):
        return None, "the version has not been converted yet"
    if len(check_rows) == 0:
        return None, "no rows to check the graph on"
    digest = rows_digest(check_rows)
    reasons: list[str] = []
    for precision in ("float64",) if exact else ("float64", "float32"):
        record, why_not = read_record(folder, precision)
        if record is None:
            reasons.append(why_not)
            continue
        if record.typed_columns != (list(typed) if typed is not None else None):
            reasons.append(f"the {precision} graph was checked for other input columns")
            continue
        if record.rows_digest != digest:
            reasons.append(f"the {precision} graph was checked on other rows")
            continue
        try:
            onnx_bytes = (folder / f"model-{precision}.onnx").read_bytes()
        except OSError as exc:
            reasons.append(f"the {precision} graph cannot be read: {exc}")
            continue
        if graph_digest(onnx_bytes) != record.graph_digest:
            reasons.append(f"the cached {precision} graph is not the one that was checked")
            continue
        try:
            session = take_preloaded(folder / f"model-{precision}.onnx", spinning, record.graph_digest)
            if session is None:
                session = build_session(onnx_bytes, spinning)
            outputs = session.run(None, graph_feeds(session, check_rows, precision, typed))
            verdict, tail, dtype = compare_answers(record.answers, outputs[0], precision, classifier=record.classifier)
        except Exception as exc:
            reasons.append(f"the {precision} graph failed on the check rows: {type(exc).__name__}: {exc}")
            continue
        if not verdict.ok or (exact and not verdict.exact):
            reasons.append(verdict.reason or f"the {precision} graph is no longer bit-identical")
            continue
        verdict.from_cache = True
        verdict.max_probability_difference = record.verdict.get("max_probability_difference")
        return RecordedGraph(predictor_for(session, tail, dtype, precision, typed), verdict, record), ""
    return None, "; ".join(reasons)


def convert_in_child(
    model_dir: Path, inputs: int | TypedInputs, graph_file: Path, precision: str = "float32", timeout: float = 900
) -> None:
    # The folder that holds this ``lockgate`` package (a checkout, or site-packages), first on the
    # child's path: the child runs this very code, whatever its working directory holds. Not
    # resolved: in a checkout lockgate/loader is a link to loader/, and its target's parent is
    # not where ``lockgate`` lives.
    root = Path(__file__).parents[3]
    env = child_environment()  # the child exits when this process is gone
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "lockgate.loader.onnx.convert", str(model_dir), json.dumps(inputs)]
    result = subprocess.run(
        [*command, str(graph_file), precision],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the conversion process exited with {result.returncode}: {last}")
