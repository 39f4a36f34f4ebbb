"""Repacking: a pack whose chunks are mostly dead is rewritten with only its live ones.

Garbage collection deletes packs whole. A pack that one dead version shares with a live one
(delta pushes put a version's new chunks beside nothing else, but a killed push or a
history-retention cut can leave a pack half used) stays whole, and its dead bytes with it.
Repacking copies the live chunks into a new pack and deletes the old one. Manifests are not
rewritten (their ids, and so every commit id above them, must never change): the old pack's
name keeps a relocation record (``store.relocation``) that readers follow.

It pays only when much of a pack is dead: rewriting ``live`` bytes frees ``dead`` bytes, so the
collector repacks a pack only when its dead share reaches ``--repack-threshold`` (default 0.5:
at most one byte written per byte freed), as restic's prune weighs ``--max-unused``.

It runs inside garbage collection, under the collector lease (no writer is active), and each
step is durable before the next:

1. the whole old pack is read and checked against its name (the BLAKE3 of its bytes), and each
   live chunk against its id;
2. the new pack is written, then its index (the order of a push);
3. the relocation record is written under the old pack's name;
4. the old pack's index is deleted, then the old pack.

A crash between two steps leaves every file readable: before 3 the new pack is an orphan that a
later collection sweeps after the grace period; after 3 the old pack and the record both exist
and readers use the old pack; the next collection repacks it again and the first new pack
becomes an orphan.
"""

from __future__ import annotations

from dataclasses import dataclass

import blake3

from lockgate.store.backends.base import Backend
from lockgate.store.errors import CorruptObjectError, IntegrityError
from lockgate.store.layout import index_key, pack_key
from lockgate.store.objects import ChunkRef
from lockgate.store.pack import PackBuilder, PackEntry, buffer_size, decode_chunk, read_footer
from lockgate.store.relocation import encode, relocation_key


@dataclass(frozen=True)
class Repacked:
    old_pack: str
    new_pack: str
    live_chunks: int
    old_bytes: int
    new_bytes: int

    @property
    def bytes_freed(self) -> int:
        return self.old_bytes - self.new_bytes


def repack(backend: Backend, pack_id: str, live_offsets: set[int], index_keys: list[str]) -> Repacked:
    """Rewrite ``pack_id`` with only the chunks at ``live_offsets``; delete the old pack and its
    index objects (``index_keys``) once the new pack and the relocation record are durable."""
    data = backend.get(pack_key(pack_id))
    if blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest() != pack_id:
        raise CorruptObjectError(pack_key(pack_id), "the pack's bytes do not match its name; not repacked")
    view = memoryview(data)
    entries = {e.offset: e for e in read_footer(pack_id, view)}
    unknown = sorted(live_offsets - set(entries))
    if unknown:
        raise IntegrityError(
            f"manifests name {len(unknown)} chunks of pack {pack_id} that its footer does not list "
            f"(first at offset {unknown[0]}); not repacked"
        )
    builder = PackBuilder(len(data), bytearray(buffer_size(len(data))))
    moved: dict[int, PackEntry] = {}  # old offset -> the chunk's entry in the new pack
    for offset in sorted(live_offsets):
        entry = entries[offset]
        stored = view[offset : offset + entry.stored_length]
        decode_chunk(
            stored, entry_id=entry.chunk_id, pack_id=pack_id, offset=offset, codec=entry.codec, length=entry.length
        )  # the same check as any read: never copy a chunk that fails its id
        moved[offset] = builder.add(entry.chunk_id, stored, entry.length, entry.codec)
    new_id, new_data, index_bytes, _ = builder.seal()
    new_size = len(new_data)
    backend.put(pack_key(new_id), new_data)
    backend.put(index_key(new_id), index_bytes)
    record = {o: ChunkRef(e.chunk_id, e.length, new_id, e.offset, e.stored_length, e.codec) for o, e in moved.items()}
    backend.put(relocation_key(pack_id), encode(record))
    for key in index_keys:
        backend.delete(key)  # the index before its pack: a dedup reader never meets a gone pack
    backend.delete(pack_key(pack_id))
    return Repacked(pack_id, new_id, len(moved), len(data), new_size)
