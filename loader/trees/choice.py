"""Which engine serves a tree model, decided at deploy and proven there.

Candidates: lockgate's tree engine in onnxruntime (``ensemble``), and the model's own predict
called the lean way (``models.TreeModel.native``). Each is run on the check rows (the input
example, the training sample, and the rows on and next to every threshold) and compared with the
reference, which is MLflow's own pyfunc answer on the same rows: a candidate serves only if every
answer is bit-identical, dtype and shape included.

When both pass, the engine serves small batches (3 to 100 times faster at one row in
``bench/serving_bench.py``: the library's own call costs more than the trees), and the library's
own predict serves large batches only where it is measured here, on the check rows, to be
clearly faster (``LARGE_BATCH_MARGIN``): XGBoost predicts a big batch on every core. The margin
keeps a noisy measurement from flipping the path between two deploys of one version.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.loader.trees.answers import same_answer
from lockgate.loader.trees.ensemble import TreeKernel
from lockgate.loader.trees.models import Predict, TreeModel
from lockgate.loader.trees.record import write_record
from lockgate.loader.trees.reference_cache import cached_reference
from lockgate.loader.trees.table import EngineUnavailable
from lockgate.loader.trees.threshold_rows import threshold_rows

ENGINE = "onnxruntime-trees"
NATIVE = "native"
BATCH_SIZES = (1, 32, 256, 1024)
LARGE_BATCH_MARGIN = 1.5  # the native predict takes large batches only when this much faster
TURNED_OFF = "turned off for this endpoint (onnx: false): the engine runs on onnxruntime"


@dataclass
class TreeVerdict:
    """What serves, and the evidence: for ``/endpoints/{name}``."""

    engine: str | None  # what serves small batches; None: no candidate was exact
    large_batches: str | None = None  # what serves batches of ``large_from_rows`` rows or more
    large_from_rows: int | None = None
    exact: list[str] = field(default_factory=list)  # the candidates that passed the check
    rows_checked: int = 0
    threshold_rows: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # candidate -> why it does not serve
    microseconds: dict[str, dict[int, float]] = field(default_factory=dict)  # candidate -> rows -> time
    model: str = ""
    precision: str = ""  # the engine's threshold precision

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["contract"] = "exact"
        return out


def check_rows_for(model: TreeModel, rows: np.ndarray, integer_columns: frozenset[int]) -> tuple[np.ndarray, int]:
    """The rows every candidate is checked on: ``rows`` and the threshold rows built on the
    first of them (zeros when there is none). Returns them and how many are threshold rows."""
    if model.engine is None:
        return rows, 0
    base = rows[0] if len(rows) else np.zeros(int(model.engine.table.feature.max(initial=0)) + 1)
    around = threshold_rows(model.engine.table, base, integer_columns)
    if rows.shape[1:] != around.shape[1:]:
        return rows, 0
    return np.concatenate([rows, around]), len(around)


def _timed(predict: Predict, rows: np.ndarray, size: int) -> float:
    batch = np.resize(rows, (size, rows.shape[1])) if len(rows) else np.zeros((size, 1))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        predict(batch)
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def choose(
    model: TreeModel,
    reference: Predict,
    rows: np.ndarray,
    integer_columns: frozenset[int] = frozenset(),
    *,
    use_engine: bool = True,
    reference_cache: Path | None = None,
) -> tuple[Predict | None, TreeVerdict]:
    """The predictor that serves ``model`` (None: neither candidate is exact) and the verdict.
    ``reference``: MLflow's answer for a float64 matrix in signature order. ``use_engine=False``
    (the endpoint's ``onnx: false``) leaves only the library's own predict to check.
    ``reference_cache``: the version's folder for MLflow's answers (``reference_cache.py``)."""
    verdict = TreeVerdict(engine=None, model=model.name)
    checked, around = check_rows_for(model, rows, integer_columns)
    verdict.rows_checked, verdict.threshold_rows = len(checked), around
    try:
        expected = cached_reference(reference_cache, checked, reference)
    except Exception as exc:  # MLflow's own code fails on these rows: it serves, and answers for it
        verdict.refused["reference"] = f"MLflow's pyfunc failed on the check rows: {type(exc).__name__}: {exc}"
        return None, verdict
    passing: dict[str, Predict] = {}
    kernel, why_not = _exact_kernel(model, checked, expected) if use_engine else (None, TURNED_OFF)
    if kernel is not None:
        passing[ENGINE] = kernel.predict
        verdict.precision = kernel.feed.graph_dtype
    else:
        verdict.refused[ENGINE] = why_not
    try:
        differs = same_answer(expected, np.asarray(model.native(checked)))
    except Exception as exc:  # the library refuses the lean call: MLflow's path serves
        differs = f"{type(exc).__name__}: {exc}"
    if differs is None:
        passing[NATIVE] = model.native
    else:
        verdict.refused[NATIVE] = differs
    verdict.exact = list(passing)
    if not passing:
        return None, verdict
    # Timed on real rows when there are enough, else on the checked rows shuffled (the threshold
    # rows take every branch): a few rows repeated walk the same paths and flatter the engine.
    sample = rows if len(rows) >= BATCH_SIZES[-1] // 4 else checked[np.random.default_rng(0).permutation(len(checked))]
    verdict.microseconds = {
        name: {size: _timed(p, sample, size) for size in BATCH_SIZES} for name, p in passing.items()
    }
    predict = _by_batch_size(passing, verdict)
    if kernel is not None and verdict.engine == ENGINE and reference_cache is not None:
        # What lets a restart serve the engine before the model loads (``record.py``).
        write_record(reference_cache, kernel, checked, verdict)
    return predict, verdict


def _exact_kernel(model: TreeModel, checked: np.ndarray, expected: np.ndarray) -> tuple[TreeKernel | None, str]:
    if model.engine is None:
        return None, model.refused or "the model cannot be expressed as a tree table"
    reasons = []
    # XGBoost's base margin is tried in each of the ways XGBoost may have computed it.
    for start in model.start_candidates or (model.engine.start,):
        engine = dataclasses.replace(model.engine, start=start)
        try:
            kernel = engine.kernel(beyond=model.native)
            differs = same_answer(expected, np.asarray(kernel.predict(checked)))
        except EngineUnavailable as exc:
            return None, str(exc)
        except Exception as exc:  # onnxruntime refuses the graph: the native path serves
            return None, f"onnxruntime cannot run the tree graph: {type(exc).__name__}: {str(exc)[:200]}"
        if differs is None:
            return kernel, ""
        reasons.append(differs)
    return None, "; ".join(dict.fromkeys(reasons))


def _by_batch_size(passing: dict[str, Predict], verdict: TreeVerdict) -> Predict:
    times = verdict.microseconds
    if len(passing) == 1:
        (verdict.engine,) = passing
        return next(iter(passing.values()))
    small, large = ENGINE, NATIVE
    verdict.engine = small

    def clearly_faster(size: int) -> bool:
        return times[large][size] * LARGE_BATCH_MARGIN < times[small][size]

    if not clearly_faster(BATCH_SIZES[-1]):
        return passing[small]
    # The smallest measured size from which the native predict stays clearly faster.
    switch_at = next(size for size in BATCH_SIZES if all(clearly_faster(s) for s in BATCH_SIZES if s >= size))
    verdict.large_batches, verdict.large_from_rows = large, switch_at
    return _switch(passing[small], passing[large], switch_at)


def _switch(small: Predict, large: Predict, from_rows: int) -> Callable[[np.ndarray], np.ndarray]:
    def predict(matrix: np.ndarray) -> np.ndarray:
        return large(matrix) if len(matrix) >= from_rows else small(matrix)

    return predict
