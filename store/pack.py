"""Packs: immutable containers of chunks, with a footer index.

Layout (all integers little-endian)::

    b"LGPACK1\\n"                                   8-byte header
    chunk bytes, back to back, in file order        raw or zstd per chunk
    index: N x (id 32 B, offset u64, stored u32, raw u32, codec u8)
    trailer: index offset u64, N u32, b"LGPKEND\\n"

A pack is named by the BLAKE3 of its whole content. The index is also written as a small
``index/<pack id>`` object, so a writer learns what the store holds without reading packs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3
import zstandard

from store.errors import CorruptChunkError, CorruptObjectError
from store.ids import chunk_id as compute_chunk_id

HEADER = b"LGPACK1\n"
TRAILER_MAGIC = b"LGPKEND\n"
_ENTRY = struct.Struct("<32sQIIB")
_TRAILER = struct.Struct("<QI8s")
TRAILER_SIZE = _TRAILER.size
MAX_PACK_BYTES = 64 * 1024 * 1024

CODEC_RAW = 0
CODEC_ZSTD = 1
# Keep a compressed chunk only when it saves at least 5 %: decompressing costs read speed.
MIN_SAVING = 0.05


@dataclass(frozen=True)
class PackEntry:
    chunk_id: str
    offset: int
    stored_length: int
    length: int
    codec: int


def encode_chunk(raw: bytes | memoryview, compressor: zstandard.ZstdCompressor) -> tuple[bytes, int]:
    packed = compressor.compress(raw)
    if len(packed) <= len(raw) * (1 - MIN_SAVING):
        return packed, CODEC_ZSTD
    return bytes(raw), CODEC_RAW


def decode_chunk(
    stored: bytes | memoryview, *, entry_id: str, pack_id: str, offset: int, codec: int, length: int
) -> bytes:
    """Return the chunk's raw bytes, verified against its id. Never returns unverified bytes."""
    if codec == CODEC_ZSTD:
        try:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=length)
        except zstandard.ZstdError as exc:
            raise CorruptChunkError(entry_id, pack_id, offset, f"cannot decompress: {exc}") from exc
    elif codec == CODEC_RAW:
        raw = bytes(stored)
    else:
        raise CorruptChunkError(entry_id, pack_id, offset, f"unknown codec {codec}")
    if len(raw) != length:
        raise CorruptChunkError(entry_id, pack_id, offset, f"length {len(raw)} != {length}")
    if compute_chunk_id(raw) != entry_id:
        raise CorruptChunkError(entry_id, pack_id, offset, "BLAKE3 mismatch")
    return raw


class PackBuilder:
    """Accumulates chunks in memory until sealed. Not thread-safe: one per writer."""

    def __init__(self) -> None:
        self._parts: list[bytes] = [HEADER]
        self._size = len(HEADER)
        self._entries: list[PackEntry] = []

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, cid: str, stored: bytes, length: int, codec: int) -> PackEntry:
        entry = PackEntry(cid, self._size, len(stored), length, codec)
        self._parts.append(stored)
        self._size += len(stored)
        self._entries.append(entry)
        return entry

    def seal(self) -> tuple[str, bytes, bytes, list[PackEntry]]:
        """Return (pack id, pack bytes, index bytes, entries)."""
        index = encode_index(self._entries)
        trailer = _TRAILER.pack(self._size, len(self._entries), TRAILER_MAGIC)
        data = b"".join([*self._parts, index, trailer])
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest(), data, index, self._entries


def encode_index(entries: list[PackEntry]) -> bytes:
    return b"".join(
        _ENTRY.pack(bytes.fromhex(e.chunk_id), e.offset, e.stored_length, e.length, e.codec) for e in entries
    )


def decode_index(pack_id: str, data: bytes) -> list[PackEntry]:
    if len(data) % _ENTRY.size:
        raise CorruptObjectError(pack_id, f"pack index length {len(data)} is not a multiple of {_ENTRY.size}")
    entries = []
    for raw_id, offset, stored, length, codec in _ENTRY.iter_unpack(data):
        entries.append(PackEntry(raw_id.hex(), offset, stored, length, codec))
    return entries


def parse_trailer(pack_id: str, trailer: bytes) -> tuple[int, int]:
    """Return (index offset, entry count) from a pack's last TRAILER_SIZE bytes."""
    if len(trailer) != TRAILER_SIZE:
        raise CorruptObjectError(pack_id, "pack is shorter than its trailer")
    index_offset, count, magic = _TRAILER.unpack(trailer)
    if magic != TRAILER_MAGIC:
        raise CorruptObjectError(pack_id, "bad pack trailer magic")
    return index_offset, count


ENTRY_SIZE = _ENTRY.size
