"""Content-defined chunking dedups edited weights, repeated content and shifted content."""

from __future__ import annotations

import numpy as np

from lockgate.store import Store

ROWS, COLS = 262_144, 64  # 64 MiB of float32


def _weights() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32)


def test_ten_percent_of_rows_changed_stores_under_fifteen_percent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(str(tmp_path / "s"), create=True)
    v1 = _weights()
    first = store.commit_files("models", "main", [("w.npy", v1.tobytes())])
    assert first.bytes_new == v1.nbytes

    v2 = v1.copy()
    rng = np.random.default_rng(1)
    block = ROWS // 40  # four contiguous blocks of 2.5 % of the rows each
    for start in (10_000, 80_000, 150_000, 230_000):
        v2[start : start + block] = rng.standard_normal((block, COLS), dtype=np.float32)
    second = store.commit_files("models", "main", [("w.npy", v2.tobytes())])
    ratio = second.bytes_new / second.bytes_total
    print(f"\n10% rows changed: new {second.bytes_new} of {second.bytes_total} bytes = {ratio:.1%}")
    assert ratio <= 0.15
    assert store.read_file(second.commit_id, "w.npy") == v2.tobytes()


def test_identical_content_stores_nothing_new(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(str(tmp_path / "s"), create=True)
    data = _weights()[:50_000].tobytes()
    store.commit_files("models", "main", [("a.bin", data)])
    again = store.commit_files("models", "other", [("b.bin", data)])
    assert again.bytes_new == 0
    assert again.chunks_new == 0
    assert again.packs_written == 0
    assert again.bytes_reused == len(data)


def test_header_inserted_at_front_still_dedups(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(str(tmp_path / "s"), create=True)
    data = _weights()[:100_000].tobytes()  # ~25 MiB
    store.commit_files("models", "main", [("a.bin", data)])
    shifted = b"H" * 123 + data
    result = store.commit_files("models", "main", [("a.bin", shifted)])
    print(f"\n123-byte header: new {result.bytes_new} of {result.bytes_total} bytes")
    # Only the chunks around the insertion point change; CDC re-synchronises after it.
    assert result.bytes_new <= 3 * 64 * 1024
    assert store.read_file(result.commit_id, "a.bin") == shifted
