"""What chunks the store already holds, and where: the writer's dedup table.

Built from the small ``index/<pack>.idx`` objects (copies of pack footers), loaded
incrementally: a refresh reads only index objects it has not seen. Readers never need it;
manifests carry their chunks' locations.
"""

from __future__ import annotations

import threading

from store.backends.base import Backend
from store.layout import INDEX_PREFIX, pack_id_of_index_key
from store.objects import ChunkRef
from store.pack import PackEntry, decode_index


class ChunkIndex:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._locations: dict[str, ChunkRef] = {}
        self._packs: set[str] = set()
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Learn the packs written since the last refresh, and forget the ones a garbage
        collection deleted: a chunk is only ever deduplicated against a pack that exists (the
        caller holds a writer lease, so none is deleted until its commit)."""
        listed = set()
        for key in self._backend.list(INDEX_PREFIX):
            pack_id = pack_id_of_index_key(key)
            listed.add(pack_id)
            if pack_id in self._packs:
                continue
            self.add(pack_id, decode_index(pack_id, self._backend.get(key)))
        with self._lock:
            gone = self._packs - listed
            if gone:
                self._packs -= gone
                self._locations = {c: ref for c, ref in self._locations.items() if ref.pack_id not in gone}

    def add(self, pack_id: str, entries: list[PackEntry]) -> None:
        with self._lock:
            if pack_id in self._packs:
                return
            self._packs.add(pack_id)
            for e in entries:
                self._locations.setdefault(
                    e.chunk_id, ChunkRef(e.chunk_id, e.length, pack_id, e.offset, e.stored_length, e.codec)
                )

    def get(self, chunk_id: str) -> ChunkRef | None:
        return self._locations.get(chunk_id)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._locations
