"""lockgate's versioned, chunked, content-addressed store.

Knows bytes, objects and refs; nothing of MLflow, HTTP or metrics. Start with ``Store.open``.
"""

from lockgate.store.errors import StoreError
from lockgate.store.repository import CheckoutReport, DirEntry, PushResult, Store, collect_files
from lockgate.store.uri import StoreURI, is_store_uri, parse_uri

__all__ = [
    "CheckoutReport",
    "DirEntry",
    "PushResult",
    "Store",
    "StoreError",
    "StoreURI",
    "collect_files",
    "is_store_uri",
    "parse_uri",
]
