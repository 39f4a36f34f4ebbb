"""The evidence of a passed ONNX check, kept beside the graph it checked.

When a graph passes its check against the native estimator (``loader/onnx/fast_path.py``), this
writes down what that check saw: the graph's BLAKE3 digest, the digest of the rows it was checked
on, the estimator's own answers on those rows, the verdict, and the versions of the libraries
that computed both sides. A later load of the same version (a warm restart) can then re-check
the graph against those recorded answers, under the same contract, without the estimator: no
sklearn import and no unpickling before the gateway is ready.

The record is trusted no further than it can be re-checked:

- a graph whose bytes are not the checked graph's (a damaged or replaced cache file) is refused;
- rows that are not the checked rows (another training sample, another input example) are refused;
- an onnxruntime, scikit-learn, skl2onnx or numpy other than the one the check ran with is
  refused: the native estimator must be asked again;
- the graph's answers on the rows must meet the recorded contract again, bit for bit where it
  was exact.

Anything refused falls back to loading the native estimator and checking the graph against it,
as every load did before.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import orjson

RECORD_VERSION = 1
# The libraries whose versions decide either side of a check's answers.
LIBRARIES = ("onnxruntime", "scikit-learn", "skl2onnx", "numpy")


@dataclass(frozen=True)
class CheckedRows:
    """The rows a check ran on and the native estimator's answers on them."""

    rows: Any  # a float64 matrix, or typed rows (one list per column, ``.columns``)
    answers: np.ndarray


@dataclass(frozen=True)
class GraphRecord:
    precision: str
    graph_digest: str
    rows_digest: str
    answers: np.ndarray
    verdict: dict[str, Any]
    classifier: bool
    probabilities: bool  # the estimator has ``predict_proba`` (what V2 offers)
    typed_columns: list[tuple[str, str]] | None


def record_file(folder: Path, precision: str) -> Path:
    return folder / f"model-{precision}.check.json"


@cache
def library_versions() -> dict[str, str | None]:
    """Read once per process, from the installed distributions' metadata: no import of sklearn or skl2onnx."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def graph_digest(onnx_bytes: bytes) -> str:
    return blake3.blake3(onnx_bytes).hexdigest()


def rows_digest(rows: Any) -> str | None:
    """A digest of check rows, or None when they cannot be written down exactly."""
    if isinstance(rows, np.ndarray):
        matrix = np.ascontiguousarray(rows, dtype=np.float64)
        return blake3.blake3(repr(matrix.shape).encode() + matrix.tobytes()).hexdigest()
    try:
        encoded = orjson.dumps(rows.columns, option=orjson.OPT_SERIALIZE_NUMPY)
    except (AttributeError, TypeError):
        return None
    return blake3.blake3(f"{len(rows)}:".encode() + encoded).hexdigest()


def record_check(
    folder: Path,
    precision: str,
    onnx_bytes: bytes,
    checked: CheckedRows,
    verdict: Any,
    *,
    classifier: bool,
    probabilities: bool,
    typed_columns: list[tuple[str, str]] | None,
) -> None:
    """Keep a passed check's evidence. Best effort: without a record, a restart loads the
    native estimator, as before."""
    digest = rows_digest(checked.rows)
    if digest is None:
        return
    answers = checked.answers
    record = {
        "version": RECORD_VERSION,
        "precision": precision,
        "graph_blake3": graph_digest(onnx_bytes),
        "rows_blake3": digest,
        # The standard library's JSON: float repr round-trips exactly, and NaN survives.
        "answers": {"dtype": answers.dtype.str, "shape": list(answers.shape), "values": answers.tolist()},
        "verdict": {k: v for k, v in verdict.as_dict().items() if k not in ("convert_seconds", "from_cache")},
        "classifier": classifier,
        "probabilities": probabilities,
        "typed_columns": [list(c) for c in typed_columns] if typed_columns is not None else None,
        "libraries": library_versions(),
    }
    path = record_file(folder, precision)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        tmp.replace(path)
    except (OSError, TypeError, ValueError):
        tmp.unlink(missing_ok=True)


def read_record(folder: Path, precision: str) -> tuple[GraphRecord | None, str]:
    """The record of ``precision``'s graph, or None and why it cannot be used."""
    path = record_file(folder, precision)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {precision} check on record"
    except (OSError, ValueError) as exc:
        return None, f"the {precision} check record is unreadable: {exc}"
    try:
        if raw.get("version") != RECORD_VERSION:
            return None, f"the {precision} check record is of another format"
        if raw.get("libraries") != library_versions():
            return None, f"the libraries changed since the {precision} graph was checked"
        answers = raw["answers"]
        values = np.array(answers["values"], dtype=np.dtype(answers["dtype"])).reshape(answers["shape"])
        typed = raw.get("typed_columns")
        return GraphRecord(
            precision=str(raw["precision"]),
            graph_digest=str(raw["graph_blake3"]),
            rows_digest=str(raw["rows_blake3"]),
            answers=values,
            verdict=dict(raw["verdict"]),
            classifier=bool(raw["classifier"]),
            probabilities=bool(raw["probabilities"]),
            typed_columns=[(str(n), str(k)) for n, k in typed] if typed is not None else None,
        ), ""
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"the {precision} check record is malformed: {type(exc).__name__}: {exc}"
