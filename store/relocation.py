"""Where the live chunks of a repacked pack went.

Manifests name each chunk's location (pack, offset), as Xet's reconstruction terms do, and
manifests are content-addressed: rewriting them would change every commit id above them, and a
pinned commit must never change. So repacking (``store.repack``) never touches a manifest. It
copies a pack's live chunks into a new pack and leaves a *relocation record* under the old pack's
name: for each old offset, the chunk id and its new location. A reader that finds the old pack
gone reads the record and follows it (``store.chunk_reader.read_span``).

A record is trusted no further than it can be checked: the chunk id it names must be the id the
manifest names, and the bytes read at the new location are verified against that id as every
chunk is. A wrong or hostile record can make a read fail; it can never make one return other
bytes.

Layout (little-endian)::

    b"LGRELOC1"                                         8-byte magic
    N x (old offset u64, chunk id 32 B, new pack id 32 B, new offset u64, stored u32, raw u32, codec u8)
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict

from lockgate.store.backends.base import Backend
from lockgate.store.errors import CorruptObjectError, ObjectNotFoundError
from lockgate.store.objects import ChunkRef

MAGIC = b"LGRELOC1"
_ENTRY = struct.Struct("<Q32s32sQIIB")
RELOCATIONS_PREFIX = "relocations/"
# Repacks of repacks: each step is one more record to follow. Bounded, so a cycle of records
# (which repack never writes) cannot loop a reader.
MAX_DEPTH = 8

Relocation = dict[int, ChunkRef]  # old offset -> where that chunk lives now


def relocation_key(pack_id: str) -> str:
    return f"{RELOCATIONS_PREFIX}{pack_id[:2]}/{pack_id}.rel"


def pack_id_of_relocation_key(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".rel")


def encode(moved: Relocation) -> bytes:
    return MAGIC + b"".join(
        _ENTRY.pack(
            old,
            bytes.fromhex(ref.chunk_id),
            bytes.fromhex(ref.pack_id),
            ref.offset,
            ref.stored_length,
            ref.length,
            ref.codec,
        )
        for old, ref in sorted(moved.items())
    )


def decode(pack_id: str, data: bytes) -> Relocation:
    body = data[len(MAGIC) :]
    if not data.startswith(MAGIC) or len(body) % _ENTRY.size:
        raise CorruptObjectError(relocation_key(pack_id), "not a relocation record")
    moved: Relocation = {}
    for old, cid, new_pack, offset, stored, length, codec in _ENTRY.iter_unpack(body):
        moved[old] = ChunkRef(cid.hex(), length, new_pack.hex(), offset, stored, codec)
    return moved


class RelocationReader:
    """Reads relocation records, keeping the most recent ones: a missing pack is usually met by
    many spans of one file in a row. Only records found are kept (a pack with no record is
    asked again), and a kept record is checked chunk by chunk on every use."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._records: OrderedDict[tuple[int, str], Relocation] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, backend: Backend, pack_id: str) -> Relocation | None:
        """The record left for ``pack_id``, or None if that pack was never repacked."""
        key = (id(backend), pack_id)
        with self._lock:
            if key in self._records:
                self._records.move_to_end(key)
                return self._records[key]
        try:
            record = decode(pack_id, backend.get(relocation_key(pack_id)))
        except ObjectNotFoundError:
            return None
        with self._lock:
            self._records[key] = record
            while len(self._records) > self._capacity:
                self._records.popitem(last=False)
        return record


RELOCATIONS = RelocationReader()
