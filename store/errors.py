"""Errors raised by the store.

StoreError
├── InvalidURIError          a lockgate:// URI or a name inside it is malformed
│   └── InvalidPathError     a file path that breaks the store's path rule (store/paths.py)
├── NotFoundError
│   ├── RepoNotFoundError    no such repository
│   ├── RefNotFoundError     no such branch, tag or commit
│   ├── PathNotFoundError    no such path in a commit's tree
│   ├── EmptyRepoError       the repository exists but has no commits
│   └── ObjectNotFoundError  a key is missing from the backend
├── IntegrityError           bytes failed verification; never served
│   ├── CorruptChunkError    a chunk's bytes do not hash to its id
│   └── CorruptObjectError   a manifest, tree, commit or pack index is damaged
├── InvalidRangeError        a byte range outside a file
├── RefConflictError         a compare-and-swap lost too many times in a row
├── TagExistsError           tags are create-once
├── BranchExistsError        a branch is created once; it then moves only by compare-and-swap
├── ProtectedRefError        the default branch or the ledger cannot be deleted that way
└── BackendError             the storage itself failed
    ├── StoreUnreachableError  the root does not exist or cannot be reached
    ├── AccessDeniedError      credentials were refused
    ├── StoreFullError         the disk under a local store is full
    └── StoreBusyError         a garbage collection (or its writers) holds the store; try again
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises."""


class InvalidURIError(StoreError, ValueError):
    pass


class InvalidPathError(InvalidURIError):
    pass


class NotFoundError(StoreError, LookupError):
    pass


class RepoNotFoundError(NotFoundError):
    pass


class RefNotFoundError(NotFoundError):
    pass


class PathNotFoundError(NotFoundError):
    pass


class EmptyRepoError(NotFoundError):
    pass


class ObjectNotFoundError(NotFoundError):
    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} is missing from the store")
        self.key = key


class IntegrityError(StoreError):
    pass


class CorruptChunkError(IntegrityError):
    def __init__(self, chunk_id: str, pack_id: str, offset: int, reason: str) -> None:
        super().__init__(f"chunk {chunk_id} in pack {pack_id} (offset {offset}) failed verification: {reason}")
        self.chunk_id = chunk_id
        self.pack_id = pack_id
        self.offset = offset


class CorruptObjectError(IntegrityError):
    def __init__(self, object_id: str, reason: str) -> None:
        super().__init__(f"object {object_id} failed verification: {reason}")
        self.object_id = object_id


class InvalidRangeError(StoreError, ValueError):
    pass


class RefConflictError(StoreError):
    pass


class TagExistsError(StoreError):
    pass


class BranchExistsError(StoreError):
    pass


class ProtectedRefError(StoreError):
    pass


class BackendError(StoreError):
    pass


class StoreUnreachableError(BackendError):
    pass


class AccessDeniedError(BackendError):
    pass


class StoreFullError(BackendError):
    pass


class StoreBusyError(BackendError):
    pass
