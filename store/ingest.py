"""Turning local bytes into packs and manifests: chunk, hash, dedup, compress, pack.

One ``Ingest`` is one writer's session. It holds an open pack in memory, seals it at
64 MiB and uploads it in the background while chunking goes on. Manifests are built only
after every pack they point into is durably written: that is the first half of the
write order (packs, then manifests, then trees, commit, ref).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from lockgate.store.backends.base import Backend
from lockgate.store.chunk_index import ChunkIndex
from lockgate.store.chunking import DEFAULT_CHUNKER, ChunkerParams, cut
from lockgate.store.ids import chunk_id as compute_chunk_id
from lockgate.store.layout import index_key, pack_key
from lockgate.store.objects import ChunkRef, Manifest
from lockgate.store.pack import MAX_PACK_BYTES, ChunkEncoder, PackBuilder, PackEntry, buffer_size

ProgressCallback = Callable[[int], None]
# Two packs in flight bound ingest memory to about 3 x 64 MiB, and keep a disk or an S3
# connection busy while the CPU chunks the next one.
_UPLOADS_IN_FLIGHT = 2


@dataclass
class IngestStats:
    bytes_total: int = 0
    bytes_new: int = 0
    bytes_reused: int = 0
    bytes_stored: int = 0  # after compression, in packs
    chunks_total: int = 0
    chunks_new: int = 0
    packs_written: int = 0


@dataclass
class _PendingFile:
    size: int
    blake3: str
    sha256: str
    chunks: list[tuple[str, int]] = field(default_factory=list)


class Ingest:
    def __init__(
        self,
        backend: Backend,
        index: ChunkIndex,
        *,
        chunker: ChunkerParams = DEFAULT_CHUNKER,
        max_pack_bytes: int = MAX_PACK_BYTES,
        progress: ProgressCallback | None = None,
        size_hint: int | None = None,
    ) -> None:
        self._backend = backend
        self._index = index
        self._chunker = chunker
        self._max_pack = max_pack_bytes
        self._progress = progress
        self._encoder = ChunkEncoder()
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-file-digest")
        # A small commit gets a small first pack buffer instead of 64 MiB.
        first = self._max_pack if size_hint is None else max(min(size_hint, self._max_pack), 64 * 1024)
        self._pack = PackBuilder(self._max_pack, bytearray(buffer_size(first)))
        self._spare_buffers: list[bytearray] = []
        self._session: set[str] = set()  # chunks in the open pack
        # Chunks in sealed packs of this session. The packs join the shared index only once
        # durable, so a failed upload can never make a later push dedup against a pack that
        # is not there.
        self._sealed_chunks: set[str] = set()
        self._uploads: list[Future[tuple[str, list[PackEntry]]]] = []
        self._pool = ThreadPoolExecutor(max_workers=_UPLOADS_IN_FLIGHT, thread_name_prefix="lockgate-pack")
        self._files: list[_PendingFile] = []
        self.stats = IngestStats()

    # -- adding content -------------------------------------------------------------------

    def add_bytes(self, data: bytes | memoryview) -> int:
        """Chunk one file's content; return its position for the manifests ``finish`` builds."""
        view = memoryview(data)
        # The whole-file digests run on their own thread (hashlib and blake3 release the GIL)
        # beside the chunk pipeline, instead of before it.
        whole = self._hasher.submit(_whole_digests, view)
        pending = _PendingFile(size=len(view), blake3="", sha256="")
        cuts = cut(view, self._chunker)
        try:
            self._pack_chunks(pending, view, cuts)
        finally:
            # The chunker holds the view while it runs; after a failure it would still hold it,
            # and the release below would hide the failure behind a BufferError.
            cuts.close()
            # Never leave a thread reading a buffer the caller is about to unmap.
            digests = whole.result()
            # The digest thread's work item still holds this view for a moment after its result
            # is set; a view left alive keeps the caller's mmap exported, and its close then
            # fails ("cannot close exported pointers exist"). Releasing it here ends the export
            # whatever the thread still holds.
            view.release()
        pending.blake3, pending.sha256 = digests
        self._files.append(pending)
        return len(self._files) - 1

    def add_stream(self, read: Callable[[int], bytes], block_size: int = 8 * 1024 * 1024) -> int:
        """Chunk one file's content from a stream (``read(n)`` returns up to n bytes, b"" at
        the end), holding at most about ``block_size`` plus one chunk in memory.

        Chunk boundaries are exactly those of ``add_bytes`` on the whole content: FastCDC decides
        each cut from the bytes after the previous cut only, so the buffer's last, possibly
        truncated chunk is simply cut again once more bytes have arrived."""
        whole_blake3 = blake3.blake3(max_threads=blake3.blake3.AUTO)
        whole_sha256 = hashlib.sha256()
        pending = _PendingFile(size=0, blake3="", sha256="")
        tail = b""
        while True:
            block = read(block_size)
            ended = not block
            if block:
                whole_blake3.update(block)
                whole_sha256.update(block)
                pending.size += len(block)
            buffer = tail + block if tail else block
            if not buffer:
                break
            view = memoryview(buffer)
            cuts = list(cut(view, self._chunker))
            # Keep the last chunk back unless the stream has ended: it may end early.
            final = cuts if ended else cuts[:-1]
            self._pack_chunks(pending, view, final)
            consumed = final[-1][0] + final[-1][1] if final else 0
            tail = bytes(view[consumed:])
            view.release()
            if ended:
                break
        pending.blake3 = whole_blake3.hexdigest()
        pending.sha256 = whole_sha256.hexdigest()
        self._files.append(pending)
        return len(self._files) - 1

    def _pack_chunks(self, pending: _PendingFile, view: memoryview, cuts: Iterable[tuple[int, int]]) -> None:
        """Name each chunk in file order, dedup it, and pack it if it is new."""
        stats = self.stats
        encode = self._encoder.encode
        known = self._index.__contains__
        session, sealed, chunks = self._session, self._sealed_chunks, pending.chunks
        piece = view[:0]
        try:
            for offset, length in cuts:
                piece = view[offset : offset + length]
                cid = compute_chunk_id(piece)
                chunks.append((cid, length))
                stats.chunks_total += 1
                stats.bytes_total += length
                if cid in session or cid in sealed or known(cid):
                    stats.bytes_reused += length
                else:
                    stored, codec = encode(piece)
                    self._store_chunk(cid, stored, length, codec)
                if self._progress:
                    self._progress(length)
        finally:
            # A failure (a full disk while a pack uploads) keeps this frame alive in its
            # traceback; a live slice would keep the caller's mmap exported and turn the real
            # error into a BufferError when the mmap closes.
            piece.release()

    def add_file(self, path: Path) -> int:
        size = os.path.getsize(path)
        if size == 0:
            return self.add_bytes(b"")
        # MAP_POPULATE maps the whole file up front: one page-table fill instead of a fault
        # per 4 KiB page while chunking, worth ~10 % of ingest speed.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ) as mapped:
            view = memoryview(mapped)
            try:
                return self.add_bytes(view)
            finally:
                view.release()

    def _store_chunk(self, cid: str, stored: bytes | memoryview, length: int, codec: int) -> None:
        if len(self._pack) and not self._pack.fits(len(stored)):
            self._seal()
        self._pack.add(cid, stored, length, codec)
        self._session.add(cid)
        self.stats.chunks_new += 1
        self.stats.bytes_new += length
        self.stats.bytes_stored += len(stored)

    # -- packs ------------------------------------------------------------------------------

    def _seal(self) -> None:
        if not len(self._pack):
            return
        builder = self._pack
        self._sealed_chunks.update(self._session)
        self._session.clear()
        # Bound memory: wait for the oldest upload before queueing another.
        in_flight = [f for f in self._uploads if not f.done()]
        if len(in_flight) >= _UPLOADS_IN_FLIGHT:
            in_flight[0].result()
        # Sealing (the footer, and the BLAKE3 that names the pack) runs on the upload thread
        # too, beside the chunking of the next pack.
        self._uploads.append(self._pool.submit(self._seal_and_upload, builder))
        self.stats.packs_written += 1
        spare = self._spare_buffers.pop() if self._spare_buffers else None
        if spare is None or len(spare) < buffer_size(self._max_pack):
            spare = bytearray(buffer_size(self._max_pack))
        self._pack = PackBuilder(self._max_pack, spare)

    def _seal_and_upload(self, builder: PackBuilder) -> tuple[str, list[PackEntry]]:
        pack_id, data, index_bytes, entries = builder.seal()
        # The pack before its index: an index entry always points at a pack that exists.
        self._backend.put(pack_key(pack_id), data)
        self._backend.put(index_key(pack_id), index_bytes)
        data.release()
        self._spare_buffers.append(builder.buffer)  # list.append is atomic under the GIL
        return pack_id, entries

    def finish(self) -> list[Manifest]:
        """Seal the last pack, wait until every pack is durable, then build the manifests."""
        try:
            self._seal()
            # In submission order: the sealed packs of this session, each durable.
            sealed = [future.result() for future in self._uploads]
        finally:
            self._pool.shutdown(wait=True)
            self._hasher.shutdown(wait=True)
        located: dict[str, ChunkRef] = {}
        for pack_id, entries in sealed:
            self._index.add(pack_id, entries)
            for e in entries:
                located[e.chunk_id] = ChunkRef(e.chunk_id, e.length, pack_id, e.offset, e.stored_length, e.codec)
        manifests = []
        for pending in self._files:
            refs: list[ChunkRef] = []
            for cid, _length in pending.chunks:
                location = located.get(cid) or self._index.get(cid)
                if location is None:  # pragma: no cover - would be a bug in this module
                    raise RuntimeError(f"chunk {cid} has no pack after ingest")
                refs.append(location)
            manifests.append(
                Manifest(
                    size=pending.size,
                    blake3=pending.blake3,
                    sha256=pending.sha256,
                    chunker=self._chunker.as_dict(),
                    chunks=tuple(refs),
                )
            )
        return manifests

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._hasher.shutdown(wait=True, cancel_futures=True)


def _whole_digests(view: memoryview) -> tuple[str, str]:
    """The file's BLAKE3 (its identity in the manifest) and SHA-256 (what MLflow and LFS name)."""
    return blake3.blake3(view).hexdigest(), hashlib.sha256(view).hexdigest()
