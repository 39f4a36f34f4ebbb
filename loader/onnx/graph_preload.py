"""Building a warm restart's ONNX sessions while the gateway imports.

A restart that serves its cached, checked graph (``loader.onnx.fast_path.graph_from_record``)
spends most of its deploy in onnxruntime building the session: 0.16-0.3 s for the 100-tree
forest's 23 MB graph. onnxruntime builds it in C++ without holding the GIL (a Python loop ran
alongside at full speed, measured), so a thread started before the gateway's imports (about
0.7 s of Python) hides that time.

A preloaded session is only a head start. ``take`` hands it out once, and only for the graph
file it was built from with the same session options and the same bytes (their BLAKE3 digest);
the graph is then re-checked against its record as every load is. Nothing here decides what
serves.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import blake3

from lockgate.loader.cache import DERIVED, ModelCache
from lockgate.loader.local_pins import LocalPins
from lockgate.loader.onnx.record import record_file

PRECISIONS = ("float64", "float32")  # the order graph_from_record tries them in

_lock = threading.Lock()
_preloaded: dict[tuple[str, bool], Future[tuple[str, Any]]] = {}


def pinned_graphs(cache_dir: Path, uris: list[str]) -> list[Path]:
    """The graph each URI's local pin would serve first on a warm restart: the version complete
    in the cache, its first precision with a check on record."""
    cache = ModelCache(cache_dir)
    pins = LocalPins(cache.directory / "pins")
    found = []
    for uri in uris:
        pinned = pins.recall(uri)
        if pinned is None or not cache.is_complete(pinned.weights.cache_key):
            continue
        folder = cache.path_of(pinned.weights.cache_key) / DERIVED / "onnx"
        for precision in PRECISIONS:
            graph = folder / f"model-{precision}.onnx"
            if record_file(folder, precision).is_file() and graph.is_file():
                found.append(graph)
                break
    return found


def preload(graphs: list[Path], spinning: bool) -> None:
    """Start building a session for each graph file, each in its own daemon thread."""
    for graph in graphs:
        future: Future[tuple[str, Any]] = Future()
        with _lock:
            key = (str(graph), spinning)
            if key in _preloaded:
                continue
            _preloaded[key] = future
        threading.Thread(target=_build, args=(graph, spinning, future), daemon=True, name="graph-preload").start()


def _build(graph: Path, spinning: bool, future: Future[tuple[str, Any]]) -> None:
    try:
        # Imported here, in this thread: onnxruntime (and numpy) load beside the gateway's imports.
        from lockgate.loader.onnx.session import build_session

        onnx_bytes = graph.read_bytes()
        future.set_result((blake3.blake3(onnx_bytes).hexdigest(), build_session(onnx_bytes, spinning)))
    except BaseException as exc:  # the deploy builds its own session, and reports any error itself
        future.set_exception(exc)


def take(graph: Path, spinning: bool, digest: str) -> Any | None:
    """The session preloaded for this graph file and options, if its bytes had ``digest``;
    waits for one still being built. Each preloaded session is handed out once."""
    with _lock:
        future = _preloaded.pop((str(graph), spinning), None)
    if future is None:
        return None
    try:
        built_digest, session = future.result()
    except Exception:
        return None
    return session if built_digest == digest else None
