"""The ONNX fast path: an sklearn model converted with skl2onnx and served by onnxruntime.

A conversion is only trusted after an equivalence check against the native estimator, on the
model's input example and on a sample of its training rows:

- regressors: max relative difference <= 1e-5;
- classifiers: identical labels (as JSON, so ``1`` vs ``1.0`` counts as different) and
  class probabilities within 1e-5.

The converted graph is cached by weights commit (``<cache>/onnx/<cache_key>/``), and so is a
failed verdict, so a model that cannot be converted costs the conversion attempt once. A
cached graph is re-checked on every load: the check costs milliseconds and guards against a
damaged cache file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

TOLERANCE = 1e-5
VERDICT_VERSION = 1


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OnnxPredictor:
    """Predicts a float64 matrix (signature column order) with onnxruntime, in the exact
    shape and dtype the native estimator returns."""

    session: Any
    input_name: str
    output_shape_tail: tuple[int, ...]
    output_dtype: np.dtype[Any]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        raw = self.session.run(None, {self.input_name: matrix.astype(np.float32, copy=False)})[0]
        shaped = np.asarray(raw).reshape((len(matrix), *self.output_shape_tail))
        return shaped.astype(self.output_dtype, copy=False)


def _session(onnx_bytes: bytes, spinning: bool = False) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Spinning intra-op threads burn the core the event loop needs: off by default. On the
    # 300-tree forest, on gives +17 % rows/s for 1,024-row requests and -3..25 % req/s for
    # 1-row requests (docs/performance.md); large-batch endpoints may want it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def convert_to_bytes(estimator: Any, n_features: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    graph = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(graph.SerializeToString())


def _check(estimator: Any, session: Any, rows: np.ndarray) -> tuple[OnnxVerdict, tuple[int, ...], np.dtype[Any]]:
    native = np.asarray(estimator.predict(_as_native_input(estimator, rows)))
    outputs = session.run(None, {session.get_inputs()[0].name: rows.astype(np.float32)})
    converted = np.asarray(outputs[0]).reshape(native.shape)
    tail, dtype = native.shape[1:], native.dtype
    n = len(rows)
    if hasattr(estimator, "classes_"):
        if json.dumps(converted.astype(dtype).tolist()) != json.dumps(native.tolist()):
            differing = int(np.sum(converted.astype(dtype) != native))
            return OnnxVerdict(False, f"{differing} of {n} labels differ from the native estimator", n), tail, dtype
        if hasattr(estimator, "predict_proba") and len(outputs) > 1:
            expected = np.asarray(estimator.predict_proba(_as_native_input(estimator, rows)))
            diff = float(np.max(np.abs(np.asarray(outputs[1]) - expected))) if n else 0.0
            if diff > TOLERANCE:
                return (
                    OnnxVerdict(False, f"probabilities differ by {diff:.3g} (> {TOLERANCE:g})", n, None, diff),
                    tail,
                    dtype,
                )
            return OnnxVerdict(True, None, n, None, diff), tail, dtype
        return OnnxVerdict(True, None, n), tail, dtype
    if native.dtype.kind not in "fiu":
        return OnnxVerdict(False, f"predictions of dtype {native.dtype} are not numeric", n), tail, dtype
    scale = np.maximum(np.abs(native.astype(np.float64)), np.finfo(np.float64).tiny)
    relative = np.abs(converted.astype(np.float64) - native) / scale
    # An exact zero predicted as 1e-9 is not a relative error of 1e300: compare absolutely near 0.
    relative = np.where(np.abs(native) < TOLERANCE, np.abs(converted - native), relative)
    worst = float(relative.max()) if relative.size else 0.0
    if not np.isfinite(worst) or worst > TOLERANCE:
        return OnnxVerdict(False, f"max relative difference {worst:.3g} (> {TOLERANCE:g})", n, worst), tail, dtype
    return OnnxVerdict(True, None, n, worst), tail, dtype


def _as_native_input(estimator: Any, rows: np.ndarray) -> Any:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names))


def has_cached_conversion(cache_dir: Path, cache_key: str) -> bool:
    """Whether this weights commit was converted before (successfully or not)."""
    folder = cache_dir / "onnx" / cache_key
    return (folder / "verdict.json").is_file()


def build_onnx_predictor(
    estimator: Any,
    columns: list[str],
    check_rows: np.ndarray,
    cache_dir: Path,
    cache_key: str,
    *,
    model_dir: Path | None = None,
    spinning: bool = False,
) -> tuple[OnnxPredictor | None, OnnxVerdict]:
    """Convert (or reuse the cached conversion of) ``estimator`` and check it on ``check_rows``
    (float64, signature column order). Returns the predictor only when the check passes.
    With ``model_dir`` (the MLflow model directory) the conversion runs in a child process."""
    if len(check_rows) == 0:
        return None, OnnxVerdict(False, "no rows to check the conversion on (no input example, no training data)")
    folder = cache_dir / "onnx" / cache_key
    graph_file, verdict_file = folder / "model.onnx", folder / "verdict.json"
    from_cache = False
    convert_seconds = 0.0
    if verdict_file.is_file():
        cached = orjson.loads(verdict_file.read_bytes())
        if cached.get("version") == VERDICT_VERSION and not cached.get("converted"):
            return None, OnnxVerdict(False, str(cached.get("reason")), from_cache=True)
    try:
        if graph_file.is_file():
            onnx_bytes, from_cache = graph_file.read_bytes(), True
        else:
            started = time.perf_counter()
            if model_dir is None:
                onnx_bytes = convert_to_bytes(estimator, len(columns))
                write_atomically(graph_file, onnx_bytes)
            else:
                convert_in_child(model_dir, len(columns), graph_file)
                onnx_bytes = graph_file.read_bytes()
            convert_seconds = time.perf_counter() - started
        session = _session(onnx_bytes, spinning)
    except Exception as exc:
        reason = f"skl2onnx cannot convert {type(estimator).__name__}: {type(exc).__name__}: {exc}"
        write_atomically(verdict_file, orjson.dumps({"version": VERDICT_VERSION, "converted": False, "reason": reason}))
        return None, OnnxVerdict(False, reason, convert_seconds=convert_seconds)
    verdict, tail, dtype = _check(estimator, session, check_rows)
    verdict.convert_seconds, verdict.from_cache = convert_seconds, from_cache
    write_atomically(verdict_file, orjson.dumps({"version": VERDICT_VERSION, "converted": True}))
    if not verdict.ok:
        return None, verdict
    return OnnxPredictor(session, session.get_inputs()[0].name, tail, dtype), verdict


def convert_in_child(model_dir: Path, n_features: int, graph_file: Path, timeout: float = 900) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "loader.onnx_convert", str(model_dir), str(n_features), str(graph_file)],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the conversion process exited with {result.returncode}: {last}")


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
