"""Fetching chunks: coalesced ranged reads on packs, in parallel, every chunk verified.

A *span* is one ranged GET covering a run of chunks that sit close together in one pack.
Coalescing turns thousands of 16 KiB chunks into a few large reads, which is what makes
S3 fast; the gap limit keeps us from downloading much we do not need.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from lockgate.store.backends.base import Backend
from lockgate.store.errors import CorruptChunkError, ObjectNotFoundError
from lockgate.store.layout import pack_key
from lockgate.store.objects import ChunkRef
from lockgate.store.pack import decode_chunk
from lockgate.store.relocation import MAX_DEPTH, RELOCATIONS

MAX_GAP = 256 * 1024
MAX_SPAN = 16 * 1024 * 1024
DEFAULT_PARALLELISM = 8

ProgressCallback = Callable[[int], None]


@dataclass
class Span:
    pack_id: str
    start: int
    end: int
    refs: list[ChunkRef] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_spans(refs: Iterable[ChunkRef], keep_order: bool = True) -> list[Span]:
    """Group refs into spans. With ``keep_order`` the spans follow the refs' order (for
    streaming a file); otherwise refs are sorted by pack and offset first (for bulk fetch)."""
    ordered = list(refs) if keep_order else sorted(set(refs), key=lambda r: (r.pack_id, r.offset))
    spans: list[Span] = []
    for ref in ordered:
        ref_end = ref.offset + ref.stored_length
        last = spans[-1] if spans else None
        if (
            last is not None
            and last.pack_id == ref.pack_id
            and last.end <= ref.offset <= last.end + MAX_GAP
            and ref_end - last.start <= MAX_SPAN
        ):
            last.end = ref_end
            last.refs.append(ref)
        else:
            spans.append(Span(ref.pack_id, ref.offset, ref_end, [ref]))
    return spans


def read_span(backend: Backend, span: Span, _depth: int = 0) -> list[bytes]:
    """Fetch one span and return its chunks' raw bytes, each verified against its id. A pack
    that was repacked is followed to where its live chunks went (``store.relocation``)."""
    try:
        data = backend.get_range(pack_key(span.pack_id), span.start, span.length)
    except ObjectNotFoundError:
        moved = RELOCATIONS.lookup(backend, span.pack_id) if _depth < MAX_DEPTH else None
        if moved is None:
            raise
        return _read_relocated(backend, span, moved, _depth)
    view = memoryview(data)
    out = []
    for ref in span.refs:
        lo = ref.offset - span.start
        out.append(
            decode_chunk(
                view[lo : lo + ref.stored_length],
                entry_id=ref.chunk_id,
                pack_id=ref.pack_id,
                offset=ref.offset,
                codec=ref.codec,
                length=ref.length,
            )
        )
    return out


def _read_relocated(backend: Backend, span: Span, moved: dict[int, ChunkRef], depth: int) -> list[bytes]:
    refs = []
    for ref in span.refs:
        new = moved.get(ref.offset)
        if new is None or new.chunk_id != ref.chunk_id or new.length != ref.length:
            raise CorruptChunkError(
                ref.chunk_id, ref.pack_id, ref.offset, "the pack was repacked and its relocation lacks this chunk"
            )
        refs.append(new)
    out: list[bytes] = []
    for relocated in plan_spans(refs):
        out.extend(read_span(backend, relocated, depth + 1))
    return out


def stream_chunks(
    backend: Backend,
    refs: Sequence[ChunkRef],
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    keep_order: bool = True,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[ChunkRef, bytes]]:
    """Yield (ref, raw bytes). Spans are fetched ``parallelism`` at a time, with a bounded
    read-ahead so that memory stays at about parallelism x MAX_SPAN."""
    spans = plan_spans(refs, keep_order=keep_order)
    if not spans:
        return
    if len(spans) == 1 or parallelism <= 1:
        for span in spans:
            for ref, raw in zip(span.refs, read_span(backend, span), strict=True):
                if progress:
                    progress(ref.length)
                yield ref, raw
        return
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="lockgate-fetch") as pool:
        pending: deque[tuple[Span, Future[list[bytes]]]] = deque()
        queue = iter(spans)
        for span in queue:
            pending.append((span, pool.submit(read_span, backend, span)))
            if len(pending) >= parallelism:
                break
        try:
            while pending:
                span, future = pending.popleft()
                chunks = future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(read_span, backend, nxt)))
                for ref, raw in zip(span.refs, chunks, strict=True):
                    if progress:
                        progress(ref.length)
                    yield ref, raw
        finally:
            for _, future in pending:
                future.cancel()
