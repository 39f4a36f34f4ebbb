"""Files of many sizes read back byte-identical, whole and by random ranges, on every backend."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lockgate.store import Store, parse_uri

SIZES = [0, 1, 4096, 5 * 1024 * 1024, pytest.param(100 * 1024 * 1024, marks=pytest.mark.slow)]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_whole_and_ranges(store: Store, size: int, tmp_path: Path) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    result = store.commit_files("models", "main", [(f"f/{size}.bin", data)], message=f"{size} bytes")
    commit = store.resolve("models", "main")
    assert result.commit_id == commit
    assert store.read_file(commit, f"f/{size}.bin") == data
    for _ in range(25):
        start = rng.randrange(0, size + 1)
        length = rng.randrange(0, min(size - start, 300_000) + 1)
        assert store.read_file(commit, f"f/{size}.bin", start, length) == data[start : start + length]
    manifest = store.file_manifest(commit, f"f/{size}.bin")
    assert manifest.size == size
    assert sum(c.length for c in manifest.chunks) == size
    if size:
        # Every chunk respects the chunker's bounds (the last one may be short).
        assert all(c.length <= 64 * 1024 for c in manifest.chunks)
        assert all(c.length >= 4 * 1024 for c in manifest.chunks[:-1])
    out = tmp_path / "checkout"
    store.checkout(commit, f"f/{size}.bin", out)
    assert (out / f"{size}.bin").read_bytes() == data


def test_directory_checkout_and_listing(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    (src / "sub" / "weights.bin").write_bytes(random.Random(1).randbytes(200_000))
    store.push(src, "models", "main", "fraud/v1")
    commit = store.resolve("models", "main")
    assert [d.name for d in store.list_dir(commit, "fraud/v1")] == ["MLmodel", "sub"]
    assert store.list_dir(commit, "fraud/v1")[1].is_dir
    assert sorted(store.list_files(commit, "fraud")) == ["fraud/v1/MLmodel", "fraud/v1/sub/weights.bin"]
    report = store.checkout(commit, "fraud/v1", tmp_path / "out")
    assert report.files == 2
    assert (tmp_path / "out" / "sub" / "weights.bin").read_bytes() == (src / "sub" / "weights.bin").read_bytes()


def test_compressible_chunks_are_stored_compressed(store: Store) -> None:
    data = b"lockgate " * 200_000
    result = store.commit_files("models", "main", [("text.txt", data)])
    assert result.bytes_stored < result.bytes_new * 0.5
    assert store.read_file(result.commit_id, "text.txt") == data
    assert any(c.codec == 1 for c in store.file_manifest(result.commit_id, "text.txt").chunks)


def test_incompressible_chunks_are_stored_raw(store: Store) -> None:
    data = random.Random(7).randbytes(300_000)
    result = store.commit_files("models", "main", [("noise.bin", data)])
    assert all(c.codec == 0 for c in store.file_manifest(result.commit_id, "noise.bin").chunks)
    assert result.bytes_stored == result.bytes_new


def test_history_time_travel_and_diff(store: Store) -> None:
    first = store.commit_files("data", "main", [("a.csv", b"x,y\n1,2\n")], message="one")
    second = store.commit_files("data", "main", [("a.csv", b"x,y\n1,3\n"), ("b.csv", b"z\n")], message="two")
    third = store.commit_files("data", "main", [], remove=["b.csv"], message="three")
    assert [c for c, _ in store.log("data", "main")] == [third.commit_id, second.commit_id, first.commit_id]
    assert store.resolve("data", "main~2") == first.commit_id
    at_second = store.commit(second.commit_id).datetime
    assert store.resolve("data", "main", at=at_second) == second.commit_id
    changes = store.diff(parse_uri("lockgate://data@main~2"), parse_uri("lockgate://data@main~1"))
    assert [(c.path, c.status) for c in changes] == [("a.csv", "modified"), ("b.csv", "added")]
    assert [
        (c.path, c.status) for c in store.diff(parse_uri("lockgate://data@main~1"), parse_uri("lockgate://data@main"))
    ] == [("b.csv", "removed")]
    store.tag("data", "v1", "main~2")
    assert store.resolve("data", "v1") == first.commit_id
    assert store.read_file(store.resolve("data", "v1"), "a.csv") == b"x,y\n1,2\n"


def test_last_commit_touching_a_path(store: Store) -> None:
    store.commit_files("models", "main", [("m/a/model.pkl", b"a")])
    landed = store.commit_files("models", "main", [("m/b/model.pkl", b"b")])
    store.commit_files("models", "main", [("m/c/model.pkl", b"c")])
    assert store.last_commit_touching("models", "main", "m/b") == landed.commit_id


def test_chunks_needed_and_fetch_report_only_what_is_missing(store: Store) -> None:
    rng = random.Random(11)
    base = rng.randbytes(600_000)
    edited = base[:300_000] + rng.randbytes(20_000) + base[320_000:]
    first = store.commit_files("models", "main", [("v1.bin", base)]).commit_id
    second = store.commit_files("models", "main", [("v2.bin", edited)]).commit_id
    held = {ref.chunk_id for ref in store.file_manifest(first, "v1.bin").chunks}
    v2 = store.stat(second, "v2.bin").manifest_id
    needed = store.chunks_needed([v2, v2], held)
    assert needed, "the edited region is new"
    assert len({r.chunk_id for r in needed}) == len(needed), "each chunk once"
    assert not {r.chunk_id for r in needed} & held
    assert sum(r.length for r in needed) < 0.3 * len(edited)
    fetched = dict(store.fetch_chunks(needed))
    assert {r.chunk_id for r in fetched} == {r.chunk_id for r in needed}
    assert store.chunks_needed([v2], {r.chunk_id for r in store.file_manifest(second, "v2.bin").chunks}) == []
