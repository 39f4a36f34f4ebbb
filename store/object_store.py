"""Reading and writing manifests, trees and commits, verified by id and cached in-process.

Objects are immutable, so a verified object can be cached for the life of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar, cast

from lockgate.store import objects
from lockgate.store.backends.base import Backend
from lockgate.store.errors import CorruptObjectError, ObjectNotFoundError
from lockgate.store.layout import object_key
from lockgate.store.objects import Commit, Manifest, Object, Tree

T = TypeVar("T", Manifest, Tree, Commit)
_CACHE_ENTRIES = 4096


class ObjectStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._cache: OrderedDict[str, Object] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, obj: Object) -> str:
        oid, stored = objects.encode(obj)
        self._backend.put(object_key(oid), stored)
        self._remember(oid, obj)
        return oid

    def keys_with_prefix(self, id_prefix: str) -> list[str]:
        """Backend keys of the objects whose id starts with ``id_prefix`` (2+ hex characters)."""
        return list(self._backend.list(object_key(id_prefix)))

    def exists(self, oid: str) -> bool:
        return oid in self._cache or self._backend.exists(object_key(oid))

    def forget(self, oid: str) -> None:
        """Drop a deleted object from the cache, so this process stops finding what gc removed."""
        with self._lock:
            self._cache.pop(oid, None)

    def _remember(self, oid: str, obj: Object) -> None:
        with self._lock:
            self._cache[oid] = obj
            self._cache.move_to_end(oid)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _get(self, oid: str, kind: str, cls: type[T]) -> T:
        with self._lock:
            cached = self._cache.get(oid)
        if cached is not None:
            if not isinstance(cached, cls):
                raise CorruptObjectError(oid, f"expected a {kind}, found a {type(cached).__name__.lower()}")
            return cached
        try:
            stored = self._backend.get(object_key(oid))
        except ObjectNotFoundError:
            raise ObjectNotFoundError(f"{kind} {oid}") from None
        obj = objects.decode(oid, stored, kind)
        self._remember(oid, obj)
        return cast(T, obj)

    def manifest(self, oid: str) -> Manifest:
        return self._get(oid, objects.MANIFEST, Manifest)

    def tree(self, oid: str) -> Tree:
        return self._get(oid, objects.TREE, Tree)

    def commit(self, oid: str) -> Commit:
        return self._get(oid, objects.COMMIT, Commit)
