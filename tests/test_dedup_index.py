"""The writer's dedup table grows with new packs, not with all packs: time-ordered index keys,
a verified local copy, and a rebuild when a garbage collection changed the store. On a local
directory (requests counted through the backend) and on SeaweedFS."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.store import Store
from lockgate.store.backends import open_backend
from lockgate.store.chunk_index import ChunkIndex
from tests.counting_backend import CountingBackend


def _store(root: str, endpoint: str | None, cache: Path) -> tuple[Store, Counter[str]]:
    """A store as a new process opens it, with its backend's calls counted."""
    Store.open(root, create=True, s3_endpoint_url=endpoint).close()
    backend = CountingBackend(open_backend(root, s3_endpoint_url=endpoint))
    return Store(backend, index_cache_dir=cache), backend.calls  # type: ignore[arg-type]


def _blob(i: int) -> bytes:
    return (f"file {i} ".encode() * 4000)[:30_000] + i.to_bytes(4, "big") * 500


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    if request.param == "file":
        yield str(tmp_path / "store"), None
    else:
        server = request.getfixturevalue("seaweed")
        yield request.getfixturevalue("s3_root"), server.endpoint


def test_a_new_process_reads_only_the_new_indexes(root: tuple[str, str | None], tmp_path: Path) -> None:
    location, endpoint = root
    cache = tmp_path / "index-cache"
    writer, _ = _store(location, endpoint, tmp_path / "other-cache")
    for i in range(40):  # 40 packs, each its own push
        writer.commit_files("data", "main", [(f"f{i}.bin", _blob(i))])

    cold, cold_calls = _store(location, endpoint, cache)
    cold.commit_files("data", "main", [("again-0.bin", _blob(0))])  # dedups: nothing new to store
    assert cold_calls["get"] >= 40, cold_calls  # the first process reads every index once

    warm, _ = _store(location, endpoint, cache)
    result = warm.commit_files("data", "main", [("again-1.bin", _blob(1))])
    assert result.bytes_new == 0, "the local copy deduplicates like the store's own indexes"
    index_reads = warm._index.last_refresh["index_reads"]
    assert index_reads <= 1, warm._index.last_refresh  # at most the cold process's own new pack
    print(f"\nindex objects read by a push: cold {cold_calls['get']} GETs in all, warm {index_reads}")
    assert warm.verify().ok


def test_gc_makes_every_table_start_again(tmp_path: Path) -> None:
    location = str(tmp_path / "store")
    cache = tmp_path / "index-cache"
    first, _ = _store(location, None, cache)
    first.create_branch("data", "exp", first.commit_files("data", "main", [("a", b"seed")]).commit_id)
    doomed = _blob(7)
    first.commit_files("data", "exp", [("doomed.bin", doomed)])
    first.commit_files("data", "main", [("b", b"refresh")])  # the local copy now names the doomed pack
    first.delete_branch("data", "exp")
    assert Store.open(location).gc(grace_seconds=0).freed["packs"].count == 1
    # A new process with the local copy made before the collection: it must not trust it.
    later, _ = _store(location, None, cache)
    result = later.commit_files("data", "main", [("doomed.bin", doomed)])
    assert result.bytes_new == len(doomed), "deduplicated against a pack gc deleted"
    assert later.read_file(result.commit_id, "doomed.bin") == doomed and later.verify().ok


def test_a_damaged_local_copy_is_rebuilt(tmp_path: Path) -> None:
    location = str(tmp_path / "store")
    cache = tmp_path / "index-cache"
    first, _ = _store(location, None, cache)
    for i in range(5):
        first.commit_files("data", "main", [(f"f{i}.bin", _blob(i))])
    first.commit_files("data", "main", [("x", b"refresh")])  # saves this process's own packs
    records = next(cache.glob("*/records.bin"))
    data = bytearray(records.read_bytes())
    data[40] ^= 0xFF
    records.write_bytes(bytes(data))
    index = ChunkIndex(open_backend(location), cache)
    index.refresh()
    assert index.last_refresh["index_reads"] >= 5, "a damaged copy is discarded, not trusted"
    second, _ = _store(location, None, cache)
    assert second.commit_files("data", "main", [("f0-again.bin", _blob(0))]).bytes_new == 0


def test_a_store_made_anew_at_the_same_root_is_not_deduplicated_against_the_old_one(tmp_path: Path) -> None:
    """A bucket or directory deleted and made again (a fresh test server on the same URL, a
    wiped bucket) holds none of the packs a local copy names: a push must write every chunk."""
    import shutil

    location = str(tmp_path / "store")
    cache = tmp_path / "index-cache"
    first, _ = _store(location, None, cache)
    blob = _blob(3)
    first.commit_files("data", "main", [("a.bin", blob)])
    first.commit_files("data", "main", [("b", b"refresh")])  # the local copy now names a.bin's pack
    first.close()
    shutil.rmtree(location)
    again, _ = _store(location, None, cache)  # the same root, a new store
    result = again.commit_files("data", "main", [("a.bin", blob)])
    assert result.bytes_new == len(blob), "deduplicated against a pack of the store that was deleted"
    assert again.read_file(result.commit_id, "a.bin") == blob
    assert again.verify().ok
