"""An ingest never leaves the caller's mapped file exported: ``add_file`` unmaps cleanly.

CI once failed with ``BufferError: cannot close exported pointers exist`` from ``add_file``:
the whole-file digest thread still held its view of the mmap for a moment after handing back
its result. These tests hold that window open on purpose instead of waiting for the race.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from lockgate.store.backends.memory import MemoryBackend
from lockgate.store.chunk_index import ChunkIndex
from lockgate.store.ingest import Ingest


class _LingeringExecutor:
    """Runs each task on a thread that sets the result, then keeps the task's arguments alive
    until told to let go: the moment a ThreadPoolExecutor worker spends between
    ``set_result`` and dropping its work item, stretched."""

    def __init__(self) -> None:
        self.let_go = threading.Event()
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            held = args
            future.set_result(fn(*held))
            self.let_go.wait(10)
            del held

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True) -> None:
        self.let_go.set()
        for thread in self._threads:
            thread.join()


def _ingest_with_lingering_digests() -> tuple[Ingest, _LingeringExecutor]:
    backend = MemoryBackend()
    ingest = Ingest(backend, ChunkIndex(backend))
    ingest._hasher.shutdown()
    lingering = _LingeringExecutor()
    ingest._hasher = lingering  # type: ignore[assignment]
    return ingest, lingering


def test_add_file_unmaps_while_the_digest_thread_still_holds_its_arguments(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(300_000))
    ingest, lingering = _ingest_with_lingering_digests()
    try:
        ingest.add_file(path)  # raised BufferError when the mmap closed, before the fix
        ingest.add_file(path)
    finally:
        lingering.let_go.set()
    manifests = ingest.finish()
    assert [m.size for m in manifests] == [300_000, 300_000]


class _FullDisk(MemoryBackend):
    def put(self, key: str, data: bytes | memoryview) -> None:
        # Slow enough that the chunker waits on this upload (two in flight), then the disk is full.
        time.sleep(0.2)
        raise OSError(errno.ENOSPC, "No space left on device", key)


def test_a_failure_while_chunking_a_mapped_file_surfaces_as_itself(tmp_path: Path) -> None:
    """A pack upload that fails mid-file (here a full disk) must reach the caller as that
    error, not as a BufferError from unmapping a file a failed frame still points into."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024))
    backend = _FullDisk()
    # Small packs, so uploads (and their failure) happen while the file is still being chunked.
    ingest = Ingest(backend, ChunkIndex(backend), max_pack_bytes=256 * 1024)
    with pytest.raises(OSError) as raised:
        ingest.add_file(path)
    assert raised.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        ingest.finish()
