"""Child-process entry points for the multi-process tests: ``python -m tests.workers ...``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from lockgate.store import Store


def commit_one(root: str, endpoint: str, index: int) -> None:
    store = Store.open(root, s3_endpoint_url=endpoint or None)
    payload = f"writer {index}\n".encode() + os.urandom(50_000)
    result = store.commit_files("shared", "main", [(f"w/{index}.bin", payload)], message=f"writer {index}")
    print(result.commit_id)


def die_after(total: int, fraction: str) -> Callable[[int], None]:
    """A progress callback that SIGKILLs this process once ``fraction`` of ``total`` is done."""
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= total * float(fraction):
            os.kill(os.getpid(), signal.SIGKILL)

    return progress


def push_and_die(root: str, endpoint: str, path: str, fraction: str) -> None:
    """Start a real push and SIGKILL ourselves once ``fraction`` of its bytes are in."""
    store = Store.open(root, s3_endpoint_url=endpoint or None)
    progress = die_after(os.path.getsize(path), fraction)
    store.commit_files("models", "main", [("big.bin", Path(path))], progress=progress)


def load_model(cache_dir: str, tracking_uri: str, uri: str, die_at: str = "") -> None:
    """Load a model version into a cache; with ``die_at`` SIGKILL ourselves once that fraction
    of the fetch is done."""
    import json

    from lockgate.loader.cache import ModelCache
    from lockgate.loader.model_loader import ModelLoader
    from lockgate.loader.registry import Resolver
    from lockgate.loader.store_config import open_configured_store

    loader = ModelLoader(Resolver(open_configured_store, tracking_uri), ModelCache(cache_dir), open_configured_store)
    resolved = loader.resolve(uri)
    progress = None
    if die_at:
        total = sum(
            e.size
            for e in open_configured_store().list_files(str(resolved.weights_commit), resolved.weights.path).values()
        )
        progress = die_after(total, die_at)

    servable = loader.load(resolved, progress=progress)
    print(json.dumps(servable.report.as_dict()))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"commit-one": commit_one, "push-and-die": push_and_die, "load-model": load_model}[command](*args)  # type: ignore[operator]
