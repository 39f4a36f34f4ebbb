"""A store in a local directory.

Values are written to a temporary file, fsynced and renamed into place, so a reader or a
crash never sees half a value. Refs are compared and swapped under an OS file lock
(``filelock``), which the kernel releases if the holder is killed, so a SIGKILLed writer
never wedges a branch. Tags are created with ``os.link``, which fails if the name exists.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from lockgate.store.backends.base import KeyInfo
from lockgate.store.errors import ObjectNotFoundError, StoreFullError, StoreUnreachableError

_TMP = ".tmp"
_LOCKS = ".locks"


class FileBackend:
    def __init__(self, root: str | Path, create: bool = False) -> None:
        path = Path(root).expanduser()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise StoreUnreachableError(f"store root {str(path)!r} does not exist or is not a directory")
        self.path = path.resolve()
        self.root = str(self.path)
        (self.path / _TMP).mkdir(exist_ok=True)
        (self.path / _LOCKS).mkdir(exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.path / key

    def get(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._file(key), "rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None

    def size(self, key: str) -> int:
        try:
            return self._file(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None

    def _write_temp(self, data: bytes | memoryview) -> Path:
        tmp = self.path / _TMP / uuid.uuid4().hex
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise StoreFullError(
                    f"the disk under store {self.root!r} is full ({len(data):,} bytes to write)"
                ) from exc
            raise
        return tmp

    def put(self, key: str, data: bytes | memoryview) -> None:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temp(data)
        os.replace(tmp, target)

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the deepest directory the prefix names, not the whole store.
        directory, _, _ = prefix.rpartition("/")
        base = self.path / directory if directory else self.path
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in (_TMP, _LOCKS))
            rel_dir = os.path.relpath(dirpath, self.path)
            for name in sorted(filenames):
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    yield key

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        # A local directory lists fast enough: the point is S3's request count.
        return (key for key in sorted(self.list(prefix)) if key > start_after)

    def list_info(self, prefix: str) -> Iterator[KeyInfo]:
        for key in self.list(prefix):
            try:
                stat = self._file(key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            yield KeyInfo(key, stat.st_size, stat.st_mtime)

    def temporaries(self) -> Iterator[KeyInfo]:
        # Every value is written to .tmp/<uuid> and renamed into place: what stays there is
        # a write that never finished (a killed push), and nothing can ever reference it.
        directory = self.path / _TMP
        if not directory.is_dir():
            return
        for entry in sorted(directory.iterdir()):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            yield KeyInfo(entry.name, stat.st_size, stat.st_mtime)

    def delete_temporary(self, key: str) -> None:
        if "/" in key or key in ("", ".", ".."):
            raise ValueError(f"not a temporary file name: {key!r}")
        (self.path / _TMP / key).unlink(missing_ok=True)

    def _lock(self, key: str) -> FileLock:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return FileLock(str(self.path / _LOCKS / f"{digest}.lock"))

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._file(key).read_bytes()
        except FileNotFoundError:
            return None
        # The value itself is the version: refs hold commit ids, which never repeat on a
        # branch (each commit names its parent), so there is no ABA problem.
        return data, data.decode()

    def swap_ref(self, key: str, data: bytes, expected_version: str | None) -> bool:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if expected_version is None:
            tmp = self._write_temp(data)
            try:
                os.link(tmp, target)  # atomic create-if-absent
                return True
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
        with self._lock(key):
            current = self.read_ref(key)
            if current is None or current[1] != expected_version:
                return False
            os.replace(self._write_temp(data), target)
            return True

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def close(self) -> None:
        pass
