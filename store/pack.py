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

from lockgate.store.errors import CorruptChunkError, CorruptObjectError
from lockgate.store.ids import chunk_id as compute_chunk_id

HEADER = b"LGPACK1\n"
TRAILER_MAGIC = b"LGPKEND\n"
_ENTRY = struct.Struct("<32sQIIB")
_TRAILER = struct.Struct("<QI8s")
MAX_PACK_BYTES = 64 * 1024 * 1024
# Room for the footer of a full pack (64 MiB of 4 KiB chunks: 16k entries of 49 bytes).
_SLACK = 1024 * 1024

CODEC_RAW = 0
CODEC_ZSTD = 1
# Keep a compressed chunk only when it saves at least 5 %: decompressing costs read speed.
MIN_SAVING = 0.05
# If the fast probe cannot save even 2 %, level 1 will not reach 5 %: skip it.
_PROBE_SAVING = 0.02
_PROBE_WINDOW = 4096


@dataclass(frozen=True)
class PackEntry:
    chunk_id: str
    offset: int
    stored_length: int
    length: int
    codec: int


class ChunkEncoder:
    """Decides per chunk whether zstd is worth it.

    Model weights are mostly incompressible, and zstd level 1 runs at ~900 MB/s here while a
    negative level runs at ~3.3 GB/s. So a fast probe runs first (borg's "auto" compression
    idea): if even that finds nothing to gain the chunk is stored raw; otherwise the better of
    the probe and level 1 is kept, if it saves at least 5 %.

    The probe reads only a 4 KiB window from the middle of a larger chunk: on random-looking
    bytes even the fast level costs as much as naming the chunk, and a chunk whose middle does
    not compress by 2 % is, in weights and pickles, a chunk that does not compress. The price
    is a chunk compressible only at its edges being stored raw: space, never correctness.

    Not thread-safe (zstd contexts are not): one encoder per thread.
    """

    def __init__(self) -> None:
        self._probe = zstandard.ZstdCompressor(level=-3)
        self._normal = zstandard.ZstdCompressor(level=1)

    def encode(self, raw: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        size = len(raw)
        if size > 2 * _PROBE_WINDOW:
            start = (size - _PROBE_WINDOW) // 2
            window = raw[start : start + _PROBE_WINDOW]
            if len(self._probe.compress(window)) > _PROBE_WINDOW * (1 - _PROBE_SAVING):
                return raw, CODEC_RAW
        probe = self._probe.compress(raw)
        if len(probe) > size * (1 - _PROBE_SAVING):
            return raw, CODEC_RAW
        packed = self._normal.compress(raw)
        best = packed if len(packed) < len(probe) else probe
        if len(best) <= size * (1 - MIN_SAVING):
            return best, CODEC_ZSTD
        return raw, CODEC_RAW


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
    """Accumulates chunks in one buffer, allocated once at the pack's full size, so each
    chunk is copied exactly once and sealing copies nothing. Not thread-safe."""

    def __init__(self, capacity: int = MAX_PACK_BYTES, buffer: bytearray | None = None) -> None:
        self._capacity = capacity
        # Zero-filling 65 MiB costs ~45 ms, so writers recycle buffers of finished uploads.
        self._buf = buffer if buffer is not None else bytearray(buffer_size(capacity))
        self._view = memoryview(self._buf)
        self._view[: len(HEADER)] = HEADER
        self._size = len(HEADER)
        self._entries: list[PackEntry] = []

    @property
    def buffer(self) -> bytearray:
        return self._buf

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def fits(self, stored_length: int) -> bool:
        """Whether a chunk fits, counting the footer entry it will need, so that sealing
        never has to grow the buffer."""
        footer = (len(self._entries) + 1) * _ENTRY.size + _TRAILER.size
        end = self._size + stored_length
        return end <= self._capacity and end + footer <= len(self._buf)

    def add(self, cid: str, stored: bytes | memoryview, length: int, codec: int) -> PackEntry:
        if not self.fits(len(stored)):
            raise ValueError("pack is full")  # callers check fits() first
        entry = PackEntry(cid, self._size, len(stored), length, codec)
        end = self._size + len(stored)
        self._view[self._size : end] = stored
        self._size = end
        self._entries.append(entry)
        return entry

    def seal(self) -> tuple[str, memoryview, bytes, list[PackEntry]]:
        """Return (pack id, pack bytes, index bytes, entries). The builder is spent after this."""
        index = encode_index(self._entries)
        footer = index + _TRAILER.pack(self._size, len(self._entries), TRAILER_MAGIC)
        end = self._size + len(footer)
        self._view[self._size : end] = footer
        data = self._view[:end]
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest(), data, index, self._entries


def buffer_size(capacity: int) -> int:
    """Bytes a builder needs for ``capacity`` bytes of chunks plus a typical footer."""
    return capacity + min(_SLACK, capacity // 16 + 4096)


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


def read_footer(pack_id: str, data: bytes | memoryview) -> list[PackEntry]:
    """The entries of a whole pack, from its own footer (what repacking reads: it trusts the
    pack's bytes, checked against the pack's name, over any separate index object)."""
    if len(data) < len(HEADER) + _TRAILER.size or bytes(data[: len(HEADER)]) != HEADER:
        raise CorruptObjectError(pack_id, "not a pack: bad header")
    index_offset, count, magic = _TRAILER.unpack(bytes(data[-_TRAILER.size :]))
    if magic != TRAILER_MAGIC or index_offset + count * _ENTRY.size != len(data) - _TRAILER.size:
        raise CorruptObjectError(pack_id, "not a pack: bad trailer")
    return decode_index(pack_id, bytes(data[index_offset : len(data) - _TRAILER.size]))
