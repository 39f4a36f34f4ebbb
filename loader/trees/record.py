"""The tree engine's passed check on record, beside the version: what lets a restart serve the
engine before the model itself is loaded (graph first, as ``loader/onnx/record.py`` does for
sklearn's ONNX graphs).

When the engine passes its deploy check and serves, ``write_record`` keeps, in the version's
``.lockgate-derived/trees/``: the graph that ran (``engine.onnx``), the rows it was checked on
(``engine-rows.npy``), and a record naming the graph's BLAKE3, the rows' key (under which MLflow's
answers on them are already kept, ``reference_cache.py``), the engine's last step and feed as
data, and the verdict. ``recorded_engine`` trusts the record no further than it can re-check:

- a graph whose bytes are not the recorded digest is refused;
- rows whose key (their bytes and the libraries' versions) has no MLflow answers kept are refused;
- the graph must give those answers again, byte for byte, on those rows.

Anything refused: the model loads and the engine is checked against MLflow as on a first deploy.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import orjson

from lockgate.loader.atomic_file import write_atomically
from lockgate.loader.trees.answers import same_answer
from lockgate.loader.trees.ensemble import Finish, TreeKernel, identity
from lockgate.loader.trees.from_lightgbm import LightGBMFinish
from lockgate.loader.trees.from_xgboost import XGBoostFinish
from lockgate.loader.trees.onnx_kernel import Feed, one_thread_session
from lockgate.loader.trees.reference_cache import read_reference, rows_key

RECORD_VERSION = 1
RECORD = "engine-record.json"
GRAPH = "engine.onnx"
ROWS = "engine-rows.npy"


def finish_spec(finish: Finish) -> dict[str, Any] | None:
    if finish is identity:
        return {"library": "identity"}
    spec = getattr(finish, "spec", None)
    return spec() if callable(spec) else None


def finish_from_spec(spec: dict[str, Any]) -> Finish:
    fields = {k: v for k, v in spec.items() if k != "library"}
    if spec["library"] == "identity":
        return identity
    if spec["library"] == "xgboost":
        return XGBoostFinish(**fields)
    if spec["library"] == "lightgbm":
        classes = fields.get("classes")
        return LightGBMFinish(**{**fields, "classes": tuple(classes) if classes is not None else None})
    raise ValueError(f"no last step is known for {spec['library']!r}")


def write_record(folder: Path, kernel: TreeKernel, rows: np.ndarray, verdict: Any) -> None:
    """Keep the passed check (best effort: a failure only costs the next restart the model load)."""
    spec = finish_spec(kernel.finish)
    if spec is None or not kernel.graph:
        return
    record = {
        "version": RECORD_VERSION,
        "graph": blake3.blake3(kernel.graph).hexdigest(),
        "rows": rows_key(rows),
        "finish": spec,
        "feed": asdict(kernel.feed),
        "verdict": verdict.as_dict(),
    }
    saved = io.BytesIO()
    np.save(saved, np.ascontiguousarray(rows, dtype=np.float64), allow_pickle=False)
    try:
        write_atomically(folder / GRAPH, kernel.graph)
        write_atomically(folder / ROWS, saved.getvalue())
        # The record last: it names the other two, so it never points at files not yet written.
        write_atomically(folder / RECORD, orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS))
    except (OSError, TypeError):
        return


def has_record(folder: Path) -> bool:
    return (folder / RECORD).is_file()


def recorded_engine(folder: Path) -> tuple[TreeKernel | None, dict[str, Any], str]:
    """The engine on record, re-checked: (kernel, the recorded verdict, "") or (None, {}, why not)."""
    try:
        record = orjson.loads((folder / RECORD).read_bytes())
        graph = (folder / GRAPH).read_bytes()
        rows = np.load(folder / ROWS, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, {}, f"no tree engine on record ({type(exc).__name__})"
    if record.get("version") != RECORD_VERSION:
        return None, {}, "the engine's record is of another version"
    if blake3.blake3(graph).hexdigest() != record.get("graph"):
        return None, {}, "the engine's graph is not the one that was checked"
    if rows_key(rows) != record.get("rows"):
        return None, {}, "the engine was checked on other rows or under other library versions"
    expected = read_reference(folder, rows)
    if expected is None:
        return None, {}, "MLflow's answers on the checked rows are not kept"
    try:
        kernel = TreeKernel(one_thread_session(graph), Feed(**record["feed"]), finish_from_spec(record["finish"]),
                            graph=graph)  # fmt: skip
        got = np.asarray(kernel.predict(rows))
    except Exception as exc:
        return None, {}, f"the recorded engine failed on its rows: {type(exc).__name__}: {str(exc)[:200]}"
    differs = same_answer(expected, got)
    if differs is not None:
        return None, {}, f"the recorded engine no longer gives MLflow's answers: {differs}"
    return kernel, dict(record["verdict"]), ""
