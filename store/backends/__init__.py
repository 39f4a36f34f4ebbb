"""Storage backends and the one function that picks one from a root URI."""

from __future__ import annotations

from store.backends.base import Backend
from store.backends.file import FileBackend
from store.backends.memory import MemoryBackend
from store.backends.s3 import S3Backend
from store.errors import InvalidURIError

__all__ = ["Backend", "FileBackend", "MemoryBackend", "S3Backend", "open_backend"]


def open_backend(root: str, *, create: bool = False, s3_endpoint_url: str | None = None) -> Backend:
    """``memory://`` (a fresh, empty store), ``s3://bucket/prefix``, ``file:///path`` or a path."""
    if root.startswith("memory://"):
        return MemoryBackend(root)
    if root.startswith("s3://"):
        return S3Backend(root, endpoint_url=s3_endpoint_url)
    if root.startswith("file://"):
        return FileBackend(root[len("file://") :], create=create)
    if "://" in root:
        raise InvalidURIError(f"unsupported store root {root!r}: use a directory, file://, s3:// or memory://")
    return FileBackend(root, create=create)
