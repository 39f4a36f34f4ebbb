"""MLflow's answers on a tree version's check rows, kept beside the version so a restart does
not ask MLflow again.

The expensive part of the tree engine's deploy check is the reference: MLflow's pyfunc on tens
of thousands of threshold rows (1.6 s for the diabetes forest). The rows are a function of the
model and its check sample, and the answers a function of the rows and the libraries, so a
restart of the same version with the same rows and the same library versions reuses them. The
engine and the library's own predict are still run on every row and compared, as on the first
deploy: what is reused is only what MLflow said.

Kept under ``<cache>/versions/<key>/.lockgate-derived/trees/``, evicted with the version, and
trusted as far as the ONNX check records are (``loader/onnx/record.py``): the cache directory is
lockgate's own; a file whose key does not match (other rows, other libraries) is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import blake3
import numpy as np
import orjson

from lockgate.loader.atomic_file import write_atomically

# The libraries whose versions decide MLflow's answers on the rows.
LIBRARIES = ("mlflow", "numpy", "pandas", "scikit-learn", "xgboost", "xgboost-cpu", "lightgbm")


def _versions() -> bytes:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}: absent")
    return ";".join(found).encode()


def rows_key(rows: np.ndarray) -> str:
    contiguous = np.ascontiguousarray(rows, dtype=np.float64)
    digest = blake3.blake3(str(contiguous.shape).encode())
    digest.update(contiguous.tobytes())
    digest.update(_versions())
    return digest.hexdigest()[:40]


def cached_reference(folder: Path | None, rows: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``compute(rows)``, read from ``folder`` when an earlier deploy of this version wrote it for
    these very rows and library versions, else computed and written there."""
    if folder is None:
        return np.asarray(compute(rows))
    kept = read_reference(folder, rows)
    if kept is not None:
        return kept
    answers = np.asarray(compute(rows))
    _write(folder / f"reference-{rows_key(rows)}.json", answers)
    return answers


def read_reference(folder: Path, rows: np.ndarray) -> np.ndarray | None:
    """MLflow's answers on ``rows``, if an earlier check kept them for these rows and libraries."""
    path = folder / f"reference-{rows_key(rows)}.json"
    try:
        record = orjson.loads(path.read_bytes())
        answers = np.array(record["values"], dtype=np.dtype(record["dtype"])).reshape(record["shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return answers if len(answers) == len(rows) else None


def _write(path: Path, answers: np.ndarray) -> None:
    """Written whole or not at all; a failure to write only costs the next restart the work."""
    record = {"dtype": answers.dtype.str, "shape": list(answers.shape), "values": answers.tolist()}
    try:
        write_atomically(path, orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
    except (OSError, TypeError):
        return
