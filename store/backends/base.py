"""The backend contract: keys and bytes, plus compare-and-swap for refs.

Backends know nothing of chunks, packs or commits. Everything above them is built from
``get``/``get_range``/``put``/``list`` on immutable keys and the two ref primitives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KeyInfo:
    """A stored key with its size and when it was written (seconds since the epoch, UTC)."""

    key: str
    size: int
    modified: float


class Backend(Protocol):
    root: str

    def get(self, key: str) -> bytes:
        """Return the whole value; raise ObjectNotFoundError when the key is absent."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer only at the end of the value)."""
        ...

    def size(self, key: str) -> int: ...

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Store an immutable value. Readers see all of it or none of it."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key that starts with ``prefix``."""
        ...

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        """Return (value, version token) or None when the ref does not exist."""
        ...

    def swap_ref(self, key: str, data: bytes, expected_version: str | None) -> bool:
        """Write ``data`` only if the ref is still at ``expected_version`` (None: only if it
        does not exist yet). Return False when another writer got there first."""
        ...

    def delete(self, key: str) -> None:
        """Remove a key; only used for garbage that nothing references."""
        ...

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        """The keys under ``prefix`` that sort after ``start_after``, in order."""
        ...

    def list_info(self, prefix: str) -> Iterator[KeyInfo]:
        """Every key under ``prefix`` with its size and write time (garbage collection)."""
        ...

    def temporaries(self) -> Iterator[KeyInfo]:
        """Half-written values a killed writer left behind (their keys are backend-private)."""
        ...

    def delete_temporary(self, key: str) -> None: ...

    def close(self) -> None: ...
