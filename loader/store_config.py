"""Which store the MLflow plugins open.

MLflow constructs artifact repositories and dataset sources itself, from a URI alone, so
there is no way to hand them configuration. This module is therefore the one place outside
``gateway`` that reads the environment: ``LOCKGATE_STORE``, ``LOCKGATE_S3_ENDPOINT_URL`` and
``LOCKGATE_INDEX_CACHE_DIR``, the same variables the gateway's settings use, with the same
defaults.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lockgate.store import Store

DEFAULT_STORE_ROOT = ".lockgate/store"
_cache: dict[tuple[str, str | None], Store] = {}
_lock = threading.Lock()


def store_root_from_environment() -> tuple[str, str | None]:
    return os.environ.get("LOCKGATE_STORE") or DEFAULT_STORE_ROOT, os.environ.get("LOCKGATE_S3_ENDPOINT_URL") or None


def open_configured_store(create: bool = False) -> Store:
    """The store named by the environment. Opened once per (root, endpoint) per process,
    so its object and chunk-index caches are shared by every plugin instance."""
    root, endpoint = store_root_from_environment()
    return open_store_at(root, endpoint, create=create)


def open_store_at(root: str, endpoint: str | None = None, *, create: bool = False) -> Store:
    """The store at ``root``, opened once per (root, endpoint) per process (caches shared)."""
    key = (os.path.abspath(root) if "://" not in root else root, endpoint)
    with _lock:
        store = _cache.get(key)
        if store is None:
            # Where the gateway keeps the dedup table's local copy (the same variable and default).
            cache = Path(os.environ.get("LOCKGATE_INDEX_CACHE_DIR") or ".lockgate/store-index")
            store = Store.open(root, create=create, s3_endpoint_url=endpoint, index_cache_dir=cache)
            _cache[key] = store
        return store
