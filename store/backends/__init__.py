"""Storage backends and the one function that picks one from a root URI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lockgate.store.backends.base import Backend
from lockgate.store.backends.file import FileBackend
from lockgate.store.backends.memory import MemoryBackend
from lockgate.store.errors import InvalidURIError

if TYPE_CHECKING:
    from lockgate.store.backends.s3 import S3Backend

__all__ = ["Backend", "FileBackend", "MemoryBackend", "S3Backend", "open_backend"]


def __getattr__(name: str) -> Any:
    # boto3 takes ~0.3 s to import: a gateway on a local store never pays it (start-to-ready).
    if name == "S3Backend":
        from lockgate.store.backends.s3 import S3Backend

        return S3Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_backend(root: str, *, create: bool = False, s3_endpoint_url: str | None = None) -> Backend:
    """``memory://`` (a fresh, empty store), ``s3://bucket/prefix``, ``file:///path`` or a path."""
    if root.startswith("memory://"):
        return MemoryBackend(root)
    if root.startswith("s3://"):
        from lockgate.store.backends.s3 import S3Backend

        return S3Backend(root, endpoint_url=s3_endpoint_url)
    if root.startswith("file://"):
        return FileBackend(root[len("file://") :], create=create)
    if "://" in root:
        raise InvalidURIError(f"unsupported store root {root!r}: use a directory, file://, s3:// or memory://")
    return FileBackend(root, create=create)
