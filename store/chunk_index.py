"""What chunks the store already holds, and where: the writer's dedup table.

Built from the small pack index objects (copies of pack footers). A writer refreshes it before
each push (under its writer lease), and a refresh costs what is new, not what exists:

- index objects are written under time-ordered keys, ``index/t/<UTC time>-<pack id>.idx``, so
  a refresh lists only the keys after the newest one it has seen (S3's ``StartAfter``), minus a
  margin for writers whose clocks run behind or whose uploads took long;
- what it has read is kept in a verified local copy (``store.index_cache``), so a new process
  reads only the indexes written since the last one did; the copy is adopted only if the newest
  pack it names still exists (one HEAD request), so a store made anew at the same root is
  never deduplicated against packs it does not hold;
- a garbage collection changes the store's *generation* (``locks/gc-generation.json``); a
  refresh that finds another generation drops everything and reads the indexes again, so no
  chunk is ever deduplicated against a pack a collection deleted.

A key the margin misses (a writer's clock more than the margin behind) costs only dedup: the
chunks it names are written again. Keys of the first layout (``index/<pack id>.idx``) are read
on every full rebuild. Readers never need any of this: manifests carry their chunks' locations.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lockgate.store.backends.base import Backend
from lockgate.store.gc_generation import read_generation
from lockgate.store.ids import is_full_id
from lockgate.store.index_cache import LocalIndexCache
from lockgate.store.layout import INDEX_PREFIX, TIMED_INDEX_PREFIX, pack_id_of_index_key, pack_key
from lockgate.store.objects import ChunkRef
from lockgate.store.pack import PackEntry, decode_index, encode_index

# Keys timestamped up to this long before the newest one seen are listed again.
LISTING_MARGIN = timedelta(minutes=15)


class ChunkIndex:
    def __init__(self, backend: Backend, cache_dir: Path | None = None) -> None:
        self._backend = backend
        self._locations: dict[str, ChunkRef] = {}
        self._packs: set[str] = set()
        self._lock = threading.Lock()
        self._local = LocalIndexCache(cache_dir, backend.root) if cache_dir is not None else None
        self._generation: str | None = None
        self._newest = ""  # the newest time-ordered index key read
        self._built = False
        self._unsaved: list[tuple[str, bytes]] = []  # packs this process wrote, not in the local copy yet
        self.last_refresh: dict[str, int] = {}  # what the last refresh cost: listed keys, index reads

    def refresh(self) -> None:
        """Learn the packs written since the last refresh (see the module docstring)."""
        generation = read_generation(self._backend)
        if not self._built and self._local is not None:
            self._adopt_local(generation)
        if not self._built or generation != self._generation:
            self._rebuild(generation)
            return
        fresh = self._read_new(self._listing_start())
        with self._lock:
            fresh += self._unsaved
            self._unsaved = []
        if fresh and self._local is not None:
            self._local.save(self._generation, self._newest, fresh, reset=False)

    def _adopt_local(self, generation: str | None) -> None:
        cached = self._local.load() if self._local is not None else None
        if cached is None or cached.generation != generation:
            return
        if cached.records and not self._backend.exists(pack_key(cached.records[-1][0])):
            # Another store now lives at this root (a bucket or directory deleted and made anew,
            # a new test server on the same URL): the copy describes packs it does not hold.
            # Deduplicating against it would commit files whose chunks were never written.
            return
        for pack_id, data in cached.records:
            self._learn(pack_id, decode_index(pack_id, data))
        self._generation, self._newest, self._built = generation, cached.newest, True

    def _rebuild(self, generation: str | None) -> None:
        with self._lock:
            self._locations, self._packs, self._unsaved = {}, set(), []
        self._newest = ""
        fresh = self._read_new(None)
        self._generation, self._built = generation, True
        if self._local is not None:
            self._local.save(generation, self._newest, fresh, reset=True)

    def _listing_start(self) -> str | None:
        if not self._newest:
            return None
        stamp = self._newest[len(TIMED_INDEX_PREFIX) :].split("-", 1)[0]
        try:
            moment = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return TIMED_INDEX_PREFIX + (moment - LISTING_MARGIN).strftime("%Y%m%dT%H%M%S%fZ")

    def _read_new(self, start_after: str | None) -> list[tuple[str, bytes]]:
        """Read every index object not known yet: all of them (``start_after`` None), or the
        time-ordered ones after ``start_after``."""
        if start_after is None:
            keys = self._backend.list(INDEX_PREFIX)
        else:
            keys = self._backend.list_after(TIMED_INDEX_PREFIX, start_after)
        listed = reads = 0
        fresh = []
        for key in keys:
            listed += 1
            if key.startswith(TIMED_INDEX_PREFIX) and key > self._newest:
                self._newest = key
            pack_id = pack_id_of_index_key(key)
            if pack_id in self._packs or not is_full_id(pack_id):
                continue  # known, or a key no writer made (its pack id becomes a pack path)
            data = self._backend.get(key)
            reads += 1
            self._learn(pack_id, decode_index(pack_id, data))
            fresh.append((pack_id, data))
        self.last_refresh = {"listed": listed, "index_reads": reads}
        return fresh

    def add(self, pack_id: str, entries: list[PackEntry]) -> None:
        """A pack this process wrote: known at once, and kept in the local copy at the next refresh."""
        if self._learn(pack_id, entries):
            with self._lock:
                self._unsaved.append((pack_id, encode_index(entries)))

    def _learn(self, pack_id: str, entries: list[PackEntry]) -> bool:
        with self._lock:
            if pack_id in self._packs:
                return False
            self._packs.add(pack_id)
            for e in entries:
                self._locations.setdefault(
                    e.chunk_id, ChunkRef(e.chunk_id, e.length, pack_id, e.offset, e.stored_length, e.codec)
                )
            return True

    def get(self, chunk_id: str) -> ChunkRef | None:
        return self._locations.get(chunk_id)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._locations
