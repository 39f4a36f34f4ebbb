"""An in-process backend, for tests and for throwaway stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from lockgate.store.backends.base import KeyInfo
from lockgate.store.errors import ObjectNotFoundError


class MemoryBackend:
    def __init__(self, root: str = "memory://") -> None:
        self.root = root
        self._data: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._times: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        try:
            return self._data[key]
        except KeyError:
            raise ObjectNotFoundError(key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start : start + length]

    def size(self, key: str) -> int:
        return len(self.get(key))

    def put(self, key: str, data: bytes | memoryview) -> None:
        with self._lock:
            self._data[key] = bytes(data)
            self._times[key] = time.time()

    def exists(self, key: str) -> bool:
        return key in self._data

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._data if k.startswith(prefix))
        yield from keys

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            if key not in self._data:
                return None
            return self._data[key], str(self._versions[key])

    def swap_ref(self, key: str, data: bytes, expected_version: str | None) -> bool:
        with self._lock:
            current = self._versions.get(key) if key in self._data else None
            if (None if current is None else str(current)) != expected_version:
                return False
            self._data[key] = bytes(data)
            self._versions[key] = (current or 0) + 1
            self._times[key] = time.time()
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._versions.pop(key, None)
            self._times.pop(key, None)

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        return (key for key in self.list(prefix) if key > start_after)

    def list_info(self, prefix: str) -> Iterator[KeyInfo]:
        with self._lock:
            found = sorted((k, len(v), self._times.get(k, 0.0)) for k, v in self._data.items() if k.startswith(prefix))
        for key, size, modified in found:
            yield KeyInfo(key, size, modified)

    def temporaries(self) -> Iterator[KeyInfo]:
        return iter(())  # a put is one assignment: nothing is ever half-written

    def delete_temporary(self, key: str) -> None:
        pass

    def close(self) -> None:
        pass
