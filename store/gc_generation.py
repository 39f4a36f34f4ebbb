"""The store's garbage-collection generation: a value every collection that deleted something
changes, so that dedup tables built before it (``store.chunk_index``) know to start again."""

from __future__ import annotations

import uuid

import orjson

from lockgate.store.backends.base import Backend
from lockgate.store.errors import ObjectNotFoundError
from lockgate.store.layout import GC_GENERATION_KEY
from lockgate.store.objects import utc_now_iso


def read_generation(backend: Backend) -> str | None:
    try:
        data = backend.get(GC_GENERATION_KEY)
    except ObjectNotFoundError:
        return None
    try:
        return str(orjson.loads(data)["generation"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unreadable"  # a damaged marker: distinct from every real one, so tables rebuild


def new_generation(backend: Backend) -> str:
    generation = uuid.uuid4().hex
    backend.put(GC_GENERATION_KEY, orjson.dumps({"generation": generation, "time": utc_now_iso()}))
    return generation
