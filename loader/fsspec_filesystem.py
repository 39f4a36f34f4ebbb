"""``lockgate://`` for fsspec, and so for pandas, pyarrow and anything else that opens URLs
through fsspec::

    pd.read_csv("lockgate://datasets@main/train.csv")
    pd.read_parquet("lockgate://datasets@v3/train.parquet")            # pyarrow reads by range
    fsspec.open("lockgate://datasets@main@{2026-11-01}/train.csv")     # the branch as it was then

Registered through fsspec's ``fsspec.specs`` entry point, so installing lockgate is enough.
Paths are ``REPO@REF/PATH`` with every REF the CLI takes (branch, tag, commit id or unique
prefix, ``~N``, ``@{TIME}``). Every byte returned has been verified against its chunk id; a
damaged chunk raises ``store.errors.IntegrityError`` and returns nothing.

The store is the one ``LOCKGATE_STORE`` (and ``LOCKGATE_S3_ENDPOINT_URL``) names, as for the
CLI, or ``storage_options={"store": ..., "s3_endpoint_url": ...}``. Reading only: writing goes
through ``lockgate store push`` / ``cp`` or the MLflow plugin, which make one commit per change.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from lockgate.loader.store_config import open_configured_store, open_store_at
from lockgate.loader.store_reader import Pinned, StoreReader
from lockgate.store.errors import InvalidURIError, NotFoundError
from lockgate.store.uri import SCHEME


class LockgateFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "lockgate"
    root_marker = ""

    def __init__(self, store: str | None = None, s3_endpoint_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        opened = open_store_at(store, s3_endpoint_url) if store else open_configured_store()
        self._reader = StoreReader(opened)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if text.startswith(SCHEME):
            text = text[len(SCHEME) :]
        return text.rstrip("/")

    # -- resolving -----------------------------------------------------------------------

    def _pin(self, path: str) -> Pinned:
        stripped = self._strip_protocol(path)
        try:
            return self._reader.pin(SCHEME + stripped)
        except InvalidURIError as exc:
            raise ValueError(str(exc)) from exc
        except NotFoundError as exc:
            raise FileNotFoundError(f"{SCHEME}{stripped}: {exc}") from exc

    @staticmethod
    def _head(path: str) -> str:
        """``REPO@REF`` (with any ``@{TIME}``) as the caller wrote it, so listed names keep it."""
        stripped = LockgateFileSystem._strip_protocol(path)
        close = stripped.find("}") if "@{" in stripped else -1
        slash = stripped.find("/", close + 1)
        return stripped if slash == -1 else stripped[:slash]

    # -- listing -------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        pinned = self._pin(path)
        head = self._head(path)
        try:
            entry = self._reader.entry(pinned)
            if entry is not None:
                entries = [self._file_info(f"{head}/{pinned.uri.path}", entry.size, pinned)]
            else:
                entries = [
                    {"name": f"{head}/{child.path}", "size": child.size or 0,
                     "type": "directory" if child.is_dir else "file"}
                    for child in self._reader.list_dir(pinned)
                ]  # fmt: skip
        except NotFoundError as exc:
            raise FileNotFoundError(f"{SCHEME}{self._strip_protocol(path)}: {exc}") from exc
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        pinned = self._pin(path)
        name = self._strip_protocol(path)
        try:
            entry = self._reader.entry(pinned)
        except NotFoundError as exc:
            raise FileNotFoundError(f"{SCHEME}{name}: {exc}") from exc
        if entry is None:
            return {"name": name, "size": 0, "type": "directory", "commit": pinned.commit}
        return self._file_info(name, entry.size, pinned)

    @staticmethod
    def _file_info(name: str, size: int, pinned: Pinned) -> dict[str, Any]:
        return {"name": name, "size": size, "type": "file", "commit": pinned.commit, "uri": pinned.pinned_uri}

    # -- reading -------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        pinned = self._pin(path)
        size = self.info(path)["size"]
        first = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
        last = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
        if last <= first:
            return b""
        try:
            return self._reader.read(pinned, first, last - first)
        except NotFoundError as exc:
            raise FileNotFoundError(f"{SCHEME}{self._strip_protocol(path)}: {exc}") from exc

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> LockgateFile:
        if mode != "rb":
            raise NotImplementedError(
                "lockgate:// is read-only through fsspec: write with `lockgate store push`/`cp` or the MLflow plugin"
            )
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(f"{SCHEME}{self._strip_protocol(path)} is a directory")
        return LockgateFile(self, path, self._pin(path), info["size"], block_size=block_size or "default")


class LockgateFile(AbstractBufferedFile):  # type: ignore[misc]
    """One file at one commit (pinned when opened), read by verified byte ranges."""

    def __init__(self, fs: LockgateFileSystem, path: str, pinned: Pinned, size: int, **kwargs: Any) -> None:
        self._pinned = pinned
        super().__init__(fs, path, mode="rb", size=size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        data: bytes = self.fs._reader.read(self._pinned, start, end - start)
        return data
