"""A verified local copy of a store's pack indexes, so a new process need not read them all.

``<directory>/<hash of the store root>/``:

- ``records.bin``: append-only records, each ``pack id (32 bytes) | length (u32 LE) | the pack's
  index bytes``, exactly as read from the store;
- ``state.json``: the store's garbage-collection generation the records belong to, the newest
  index key seen, and the length and BLAKE3 of ``records.bin`` up to the last complete write.

A load that finds the hash wrong, a record cut short or a pack id that is not hex discards the
copy and the caller rebuilds from the store: a damaged cache costs a re-read, never a wrong
dedup. Processes sharing the directory take a file lock around each load and save.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import blake3
import orjson
from filelock import FileLock

_LENGTH = struct.Struct("<I")


@dataclass
class CachedIndexes:
    generation: str | None
    newest: str  # the newest time-ordered index key seen ("" for none)
    records: list[tuple[str, bytes]]  # (pack id, index bytes)


class LocalIndexCache:
    def __init__(self, directory: Path, store_root: str) -> None:
        self._dir = Path(directory) / blake3.blake3(store_root.encode()).hexdigest()[:24]
        self._records = self._dir / "records.bin"
        self._state = self._dir / "state.json"
        self._lock_path = self._dir / ".lock"

    def _lock(self) -> FileLock:
        self._dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self._lock_path))

    def load(self) -> CachedIndexes | None:
        with contextlib.suppress(OSError), self._lock():
            return self._load()
        return None

    def _load(self) -> CachedIndexes | None:
        try:
            state = orjson.loads(self._state.read_bytes())
            length, digest = int(state["length"]), str(state["blake3"])
            with self._records.open("rb") as handle:
                data = handle.read(length)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if len(data) != length or blake3.blake3(data).hexdigest() != digest:
            return None  # damaged or half-written: rebuild
        records = []
        view, at = memoryview(data), 0
        while at < length:
            if at + 36 > length:
                return None
            pack_id = bytes(view[at : at + 32]).hex()
            (size,) = _LENGTH.unpack_from(view, at + 32)
            at += 36
            if at + size > length:
                return None
            records.append((pack_id, bytes(view[at : at + size])))
            at += size
        return CachedIndexes(state.get("generation"), str(state.get("newest", "")), records)

    def save(self, generation: str | None, newest: str, records: list[tuple[str, bytes]], *, reset: bool) -> None:
        """Append ``records`` (or, with ``reset``, replace every record) and record the state."""
        with contextlib.suppress(OSError), self._lock():
            previous = None if reset else self._load()
            mode = "wb" if previous is None else "ab"
            if previous is not None:
                # Append after the last verified byte (a torn append beyond it is overwritten).
                with self._records.open("r+b") as handle:
                    handle.truncate(int(orjson.loads(self._state.read_bytes())["length"]))
            blob = b"".join(bytes.fromhex(p) + _LENGTH.pack(len(d)) + d for p, d in records)
            with self._records.open(mode) as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            with self._records.open("rb") as handle:
                data = handle.read()
            state = {"generation": generation, "newest": newest, "length": len(data),
                     "blake3": blake3.blake3(data).hexdigest()}  # fmt: skip
            tmp = self._state.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(state))
            os.replace(tmp, self._state)
