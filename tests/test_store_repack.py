"""Repacking inside ``lockgate store gc``: a pack still in use but mostly dead is rewritten with
only its live chunks; no commit or manifest changes, readers follow the relocation record, and a
record can make a read fail but never return other bytes. On a directory, in memory and on
SeaweedFS (real S3), through ``Store.gc`` and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lockgate.store import Store
from lockgate.store.errors import IntegrityError
from lockgate.store.layout import pack_key
from lockgate.store.objects import ChunkRef
from lockgate.store.relocation import RELOCATIONS, RELOCATIONS_PREFIX, decode, encode, relocation_key

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def _data(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _packs(store: Store) -> dict[str, int]:
    return {info.key.rsplit("/", 1)[-1].removesuffix(".pack"): info.size for info in store.backend.list_info("packs/")}


def _reopen(store: Store) -> Store:
    """The same store as a fresh process sees it: no object cache, no relocation records read."""
    if store.root.startswith("memory"):
        return store
    return Store.open(store.root, s3_endpoint_url=getattr(store.backend, "endpoint_url", None))


def _one_shared_pack(store: Store, *, kept: dict[str, bytes], dropped: dict[str, bytes]) -> str:
    """Push every file in one commit (one pack), keep ``kept`` on their own branches (they dedup
    into that pack), then delete the branch that held them all. Returns the shared pack."""
    before = set(_packs(store))
    store.commit_files("r", "all", [(name, data) for name, data in {**kept, **dropped}.items()])
    (pack,) = set(_packs(store)) - before
    for name, data in kept.items():
        branch = "keep-" + name.removesuffix(".bin")
        store.commit_files("r", branch, [(name, data)])
    assert set(_packs(store)) - before == {pack}, "the kept files dedup into the shared pack"
    store.delete_branch("r", "all", force=True)
    return pack


def test_a_mostly_dead_pack_is_repacked_and_reads_the_same(store: Store) -> None:
    a, b = _data(1, 300_000), _data(2, 1_200_000)
    pack = _one_shared_pack(store, kept={"a.bin": a}, dropped={"b.bin": b})
    commit = store.resolve("r", "keep-a")
    manifest = store.file_manifest(commit, "a.bin")
    old_size = _packs(store)[pack]

    before = dict(_packs(store))
    dry = store.gc(grace_seconds=0, dry_run=True)
    assert _packs(store) == before and not list(store.backend.list(RELOCATIONS_PREFIX)), "--dry-run changed nothing"
    assert dry.repacked_packs == 1 and dry.partly_dead_packs == 1

    report = store.gc(grace_seconds=0)
    assert report.repacked_packs == 1
    assert pack not in _packs(store), "the old pack is gone"
    (new_pack,) = set(_packs(store))
    new_size = _packs(store)[new_pack]
    # Exactly the dead bytes: the new pack holds a's chunks, its footer and nothing else.
    assert report.freed["repacked"].bytes == old_size - new_size == dry.freed["repacked"].bytes
    assert report.repacked_live_bytes == new_size
    assert new_size < old_size / 3

    # Nothing above the chunks changed: the same commit, the same manifest, the same bytes.
    assert store.resolve("r", "keep-a") == commit and store.file_manifest(commit, "a.bin") == manifest
    assert {ref.pack_id for ref in manifest.chunks} == {pack}, "the manifest still names the old pack"
    fresh = _reopen(store)
    assert fresh.read_file(commit, "a.bin") == a
    assert fresh.read_file(commit, "a.bin", start=123_456, length=1000) == a[123_456:124_456]
    assert fresh.verify().ok
    record = decode(pack, store.backend.get(relocation_key(pack)))
    assert {ref.pack_id for ref in record.values()} == {new_pack}

    again = store.gc(grace_seconds=0)
    assert again.bytes_freed == 0 and again.repacked_packs == 0, "nothing left to do"
    assert store.backend.exists(relocation_key(pack)), "the record is kept while a manifest names its pack"

    # New pushes dedup against the new pack: the same content stores nothing new.
    store.commit_files("r", "copy", [("copy.bin", a)])
    assert set(_packs(store)) == {new_pack}

    # Once no manifest names the old pack, its record goes too, and the new pack with the last user.
    store.delete_branch("r", "keep-a", force=True)
    store.delete_branch("r", "copy", force=True)
    store.gc(grace_seconds=0)
    assert not list(store.backend.list(RELOCATIONS_PREFIX)) and not _packs(store)


def test_a_repack_of_a_repacked_pack_is_followed(store: Store) -> None:
    a, c, b = _data(3, 200_000), _data(4, 900_000), _data(5, 1_500_000)
    pack = _one_shared_pack(store, kept={"a.bin": a, "c.bin": c}, dropped={"b.bin": b})
    assert store.gc(grace_seconds=0).repacked_packs == 1
    (second,) = set(_packs(store))
    store.delete_branch("r", "keep-c", force=True)  # c was most of the repacked pack
    report = store.gc(grace_seconds=0)
    assert report.repacked_packs == 1 and second not in _packs(store)
    commit = store.resolve("r", "keep-a")
    fresh = _reopen(store)
    assert fresh.read_file(commit, "a.bin") == a, "old pack -> second pack -> third pack"
    assert fresh.verify().ok
    assert store.backend.exists(relocation_key(pack)) and store.backend.exists(relocation_key(second))


def test_a_relocation_record_cannot_make_a_read_return_other_bytes(store: Store) -> None:
    a, c, b = _data(6, 200_000), _data(7, 200_000), _data(8, 2_000_000)
    pack = _one_shared_pack(store, kept={"a.bin": a, "c.bin": c}, dropped={"b.bin": b})
    store.gc(grace_seconds=0)
    record = decode(pack, store.backend.get(relocation_key(pack)))
    a_offsets = {ref.offset for ref in store.file_manifest(store.resolve("r", "keep-a"), "a.bin").chunks}
    c_refs = [record[o] for o in sorted(record) if o not in a_offsets]
    # A hostile record: every chunk of a now "lives" where one of c's chunks does.
    target = c_refs[0]
    forged = {
        old: ChunkRef(ref.chunk_id, ref.length, target.pack_id, target.offset, target.stored_length, target.codec)
        for old, ref in record.items()
        if old in a_offsets
    }
    store.backend.put(relocation_key(pack), encode({**record, **forged}))
    fresh = _reopen(store)
    RELOCATIONS._records.clear()  # this process read the honest record before: forget it
    with pytest.raises(IntegrityError):
        fresh.read_file(store.resolve("r", "keep-a"), "a.bin")
    assert fresh.read_file(store.resolve("r", "keep-c"), "c.bin") == c, "chunks the record did not touch still read"
    assert not fresh.verify().ok


def test_young_manifests_keep_their_chunks_out_of_a_repack(store: Store) -> None:
    """The grace period covers chunks too: a manifest no ref reaches yet but newer than --grace
    (a writer about to commit) keeps the chunks it names, so the pack is not repacked without them."""
    a, b = _data(9, 300_000), _data(10, 1_200_000)
    pack = _one_shared_pack(store, kept={"a.bin": a}, dropped={"b.bin": b})
    young = store.gc(grace_seconds=3600)  # the deleted branch's manifests are seconds old
    assert young.repacked_packs == 0 and pack in _packs(store)
    assert store.gc(grace_seconds=0).repacked_packs == 1


def test_no_repack_keeps_packs_whole_and_the_cli_reports_repacks(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(str(root), create=True)
    pack = _one_shared_pack(store, kept={"a.bin": _data(11, 300_000)}, dropped={"b.bin": _data(12, 1_200_000)})
    env = {**os.environ, "LOCKGATE_STORE": str(root)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOCKGATE, "store", "gc", "--grace", "0s", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    kept = run("--no-repack")
    assert kept.returncode == 0, kept.stderr
    assert "1 packs are partly dead and kept whole (--no-repack)" in kept.stdout and pack in _packs(store)
    high = run("--repack-threshold", "0.99", "--json")
    assert high.returncode == 0 and json.loads(high.stdout)["repacked"]["packs"] == 0
    assert run("--repack-threshold", "0").returncode != 0, "a threshold of 0 would rewrite every pack"
    dry = run("--dry-run")
    assert dry.returncode == 0 and "would repack 1 packs at least 50% dead" in dry.stdout and pack in _packs(store)
    done = run("--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["repacked"]["packs"] == 1 and summary["freed"]["repacked"]["bytes"] > 1_000_000
    assert pack not in _packs(store) and not store.backend.exists(pack_key(pack))
    verify = subprocess.run([LOCKGATE, "store", "verify"], env=env, capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
