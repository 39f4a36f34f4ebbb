"""``lockgate store gc`` on a directory, in memory and on SeaweedFS (real S3): it frees exactly
what nothing reaches, keeps what the ledger names, changes nothing with ``--dry-run``, and loses
nothing to a push that runs beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lockgate.store import Store
from lockgate.store.chunk_index import ChunkIndex
from lockgate.store.errors import StoreBusyError
from lockgate.store.ingest import Ingest
from lockgate.store.layout import LEDGER_REPO
from lockgate.store.leases import COLLECTOR_KEY, WRITERS_PREFIX, collector_hold, writer_lease

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
PREFIXES = ("packs/", "index/", "objects/")


def _data(seed: int, size: int = 1 << 20) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _keys(store: Store) -> dict[str, int]:
    return {info.key: info.size for prefix in PREFIXES for info in store.backend.list_info(prefix)}


def _killed_push(store: Store, data: bytes) -> None:
    """What a push killed after writing its packs and before its commit leaves behind."""
    index = ChunkIndex(store.backend)
    index.refresh()
    ingest = Ingest(store.backend, index)
    ingest.add_bytes(data)
    ingest.finish()
    if store.root.startswith("/") or "://" not in store.root:  # a directory: a half-written value too
        tmp = Path(store.root) / ".tmp"
        tmp.mkdir(exist_ok=True)
        (tmp / uuid.uuid4().hex).write_bytes(data[:300_000])


def test_gc_frees_exactly_the_unreachable_bytes(store: Store) -> None:
    store.commit_files("models", "main", [("m/weights.bin", _data(1))])
    store.tag("models", "v1", "main")
    reachable = _keys(store)
    # A retired version: pushed to a branch that is then deleted.
    store.create_branch("models", "exp", "main")
    store.commit_files("models", "exp", [("m/weights.bin", _data(2))])
    store.delete_branch("models", "exp")
    # Two killed pushes.
    _killed_push(store, _data(3))
    _killed_push(store, _data(4, 700_000))
    garbage = {k: v for k, v in _keys(store).items() if k not in reachable}
    temporaries = sum(info.size for info in store.backend.temporaries())
    assert garbage and set(reachable) <= set(_keys(store))

    before = _keys(store)
    dry = store.gc(grace_seconds=0, dry_run=True)
    assert _keys(store) == before, "--dry-run deleted something"
    assert dry.bytes_freed == sum(garbage.values()) + temporaries

    report = store.gc(grace_seconds=0)
    assert _keys(store) == reachable, "gc must delete exactly the unreachable keys"
    assert report.bytes_freed == sum(garbage.values()) + temporaries == dry.bytes_freed
    assert report.freed["packs"].count == 3 and report.freed["indexes"].count == 3
    assert sum(info.size for info in store.backend.temporaries()) == 0
    assert store.verify().ok
    assert store.read_file(store.resolve("models", "v1"), "m/weights.bin") == _data(1)
    assert not list(store.backend.list("locks/")), "no lease outlives the collection"
    again = store.gc(grace_seconds=0)
    assert again.bytes_freed == 0


def test_the_grace_period_keeps_young_garbage(store: Store) -> None:
    store.commit_files("models", "main", [("a.bin", _data(5))])
    _killed_push(store, _data(6))
    before = _keys(store)
    report = store.gc(grace_seconds=3600)
    assert report.bytes_freed == 0 and report.kept_young.count >= 2  # the pack and its index
    assert _keys(store) == before


def test_commits_the_ledger_names_are_kept(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"), create=True)
    store.create_branch("models", "exp", store.commit_files("models", "main", [("a.bin", _data(7))]).commit_id)
    served = store.commit_files("models", "exp", [("a.bin", _data(8))]).commit_id
    store.delete_branch("models", "exp")
    # A deployment served the retired commit: the ledger keeps it (and everything it needs).
    event = {"endpoint": "m", "action": "deploy", "actor": "t", "time": "2026-12-01T10:00:00.000000Z",
             "to": {"version": "2", "weights_commit": served, "dataset_commit": None}}  # fmt: skip
    store.commit_files(LEDGER_REPO, "main", [("events/m/1.json", json.dumps(event).encode())])
    report = store.gc(grace_seconds=0)
    assert report.bytes_freed == 0
    assert store.read_file(served, "a.bin") == _data(8)
    # With a retention window that ends after the event, it goes.
    later = store.gc(grace_seconds=0, ledger_retention_seconds=60)
    assert later.freed["packs"].count == 1
    assert store.verify().ok


def _slow_progress(seconds: float) -> object:
    def progress(*_args: object) -> None:
        time.sleep(seconds)

    return progress


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(20))
def test_a_push_beside_gc_loses_nothing(shared_root: tuple[str, str | None], round_: int) -> None:
    """A push that started before the sweep and commits after it dedups against a killed
    push's orphan pack: the collector must wait for it, and then the pack is reachable."""
    root, endpoint = shared_root
    store = Store.open(root, s3_endpoint_url=endpoint)
    payload = _data(100 + round_, 300_000)
    _killed_push(store, payload)  # the orphan that the push will reuse
    pushed: list[str] = []
    errors: list[BaseException] = []

    def push() -> None:
        try:
            result = store.commit_files("models", "main", [(f"r{round_}.bin", payload)],
                                        progress=_slow_progress(0.02))  # fmt: skip
            pushed.append(result.commit_id)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=push)
    writer.start()
    deadline = time.monotonic() + 30
    while not list(store.backend.list(WRITERS_PREFIX)):  # the push holds its lease
        assert time.monotonic() < deadline
        time.sleep(0.005)
    report = Store.open(root, s3_endpoint_url=endpoint).gc(grace_seconds=0)
    writer.join(timeout=120)
    assert not errors and pushed
    assert store.read_file(pushed[0], f"r{round_}.bin") == payload
    assert report.freed["packs"].count == 0, "the orphan pack became reachable before the sweep"
    assert store.verify().ok


@pytest.mark.slow
def test_a_push_during_a_sweep_waits_and_loses_nothing(shared_root: tuple[str, str | None]) -> None:
    root, endpoint = shared_root
    store = Store.open(root, s3_endpoint_url=endpoint)
    store.commit_files("models", "main", [("keep.bin", _data(30))])
    for seed in (31, 32, 33):
        _killed_push(store, _data(seed, 300_000))
    payload = _data(31, 300_000)  # the same bytes as an orphan being swept
    sweeping = threading.Event()

    def slow_sweep(done: int, total: int) -> None:
        sweeping.set()
        time.sleep(0.05)

    collector = threading.Thread(target=lambda: Store.open(root, s3_endpoint_url=endpoint).gc(
        grace_seconds=0, progress=slow_sweep))  # fmt: skip
    collector.start()
    assert sweeping.wait(30)
    result = store.commit_files("models", "main", [("again.bin", payload)])  # waits for the sweep
    collector.join(timeout=120)
    assert store.read_file(result.commit_id, "again.bin") == payload
    assert store.verify().ok


def test_leases_exclude_each_other(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"), create=True)
    backend = store.backend
    with collector_hold(backend, wait_for_writers=1):
        with pytest.raises(StoreBusyError, match="garbage collection"):
            store.commit_files("r", "main", [("a", b"x")], gc_wait=0.3)
        with pytest.raises(StoreBusyError, match="another garbage collection"):
            store.gc(grace_seconds=0)
    with writer_lease(backend), pytest.raises(StoreBusyError, match="writer"):
        store.gc(grace_seconds=0, wait_for_writers=0.3)
    # A collector that died: its expired lease is taken over.
    backend.put(COLLECTOR_KEY, json.dumps({"holder": "dead:1", "started": 0, "expires": 1}).encode())
    backend.put(f"{WRITERS_PREFIX}dead.json", json.dumps({"holder": "dead:2", "started": 0, "expires": 1}).encode())
    assert store.gc(grace_seconds=0).bytes_freed == 0
    assert store.commit_files("r", "main", [("a", b"x")]).changed


def test_the_cli_reports_and_frees(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(str(root), create=True)
    store.commit_files("models", "main", [("a.bin", _data(40))])
    _killed_push(store, _data(41))
    env = {**os.environ, "LOCKGATE_STORE": str(root)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOCKGATE, "store", "gc", *args], env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip

    dry = run("--dry-run", "--grace", "0s", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["bytes_freed"] > 1_000_000
    young = run("--dry-run")
    assert young.returncode == 0 and "would free 0 B" in young.stdout and "younger than --grace 1h" in young.stdout
    done = run("--grace", "0")
    assert done.returncode == 0 and "freed" in done.stdout, done.stderr
    assert run("--grace", "soon").returncode != 0
    verify = subprocess.run([LOCKGATE, "store", "verify"], env=env, capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_long_lived_writer_forgets_the_packs_gc_deleted(store: Store) -> None:
    """A process that pushed before a collection (its dedup table knows the pack) must not
    dedup against that pack once the collection deleted it."""
    data = _data(50)
    store.create_branch("models", "exp", store.commit_files("models", "main", [("a", b"seed")]).commit_id)
    store.commit_files("models", "exp", [("w.bin", data)])
    store.delete_branch("models", "exp")
    if store.root.startswith("memory://"):
        collector = store  # one process: the same backend
    else:  # another process's view of the same store
        collector = Store.open(store.root, s3_endpoint_url=getattr(store.backend, "endpoint_url", None))
    assert collector.gc(grace_seconds=0).freed["packs"].count == 1
    result = store.commit_files("models", "main", [("w.bin", data)])  # the same bytes again
    assert result.bytes_new == len(data), "the chunks were deduplicated against a deleted pack"
    assert store.read_file(result.commit_id, "w.bin") == data
    assert store.verify().ok


def test_crafted_ledger_events_and_index_keys_are_ignored(tmp_path: Path) -> None:
    """Store contents are untrusted: a ledger event that is not an object, or names a commit
    that is no id, keeps nothing and breaks nothing; an index key no writer made is not read."""
    store = Store.open(str(tmp_path / "store"), create=True)
    store.commit_files(LEDGER_REPO, "main", [
        ("events/m/1.json", b"[1, 2]"), ("events/m/2.json", json.dumps({"to": "x"}).encode()),
        ("events/m/3.json", json.dumps({"to": {"weights_commit": "../" * 21 + "a"}}).encode()),
    ])  # fmt: skip
    store.backend.put("index/t/20260101T000000000000Z-..%2F..%2Fevil.idx", b"not an index")
    store.backend.put("index/t/20260101T000000000000Z-nothex.idx", b"not an index")
    report = store.gc(grace_seconds=0)
    assert report.freed["indexes"].count == 2
    assert store.commit_files("data", "main", [("a", _data(60, 50_000))]).changed
    assert store.verify().ok


HOLD_A_WRITER_LEASE = """
import sys, time
from lockgate.store import Store
from lockgate.store.leases import writer_lease
store = Store.open(sys.argv[1])
with writer_lease(store.backend):
    print("holding", flush=True)
    time.sleep(120)
"""


def _lease_holder(root: Path) -> subprocess.Popen[str]:
    """A real process holding a writer lease on the store at ``root`` (a push in progress)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_WRITER_LEASE, str(root)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _gc_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKGATE_STORE": str(root)}
    return subprocess.run([LOCKGATE, "store", "gc", "--dry-run", "--grace", "0s", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_gc_says_what_it_waits_for_and_takes_over_the_lease_of_a_killed_push(tmp_path: Path) -> None:
    """A push SIGKILLed mid-way left its lease for its whole lifetime (300 s), and gc waited for
    it in silence. A lease whose process ran on this machine and is gone is taken over at once."""
    root = tmp_path / "store"
    Store.open(str(root), create=True).commit_files("models", "main", [("a.bin", _data(50))])
    holder = _lease_holder(root)
    try:
        busy = _gc_cli(root, "--wait", "1s")  # a live push: gc waits, says for whom, and gives up
        assert busy.returncode != 0
        assert "waiting for 1 push(es) to commit" in busy.stderr and f":{holder.pid} (expires in" in busy.stderr
        assert "still hold store" in busy.stderr
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The same lease, its holder killed: it is still unexpired, and gc goes on at once.
    (lease,) = Store.open(str(root)).backend.list(WRITERS_PREFIX)
    assert json.loads(Store.open(str(root)).backend.get(lease))["expires"] > time.time() + 200
    done = _gc_cli(root, "--wait", "30s", "--json")
    assert done.returncode == 0, done.stderr
    assert "waiting for" not in done.stderr
    assert Store.open(str(root)).commit_files("models", "main", [("b.bin", b"more")]).changed


def test_a_lease_from_another_machine_is_waited_out(tmp_path: Path) -> None:
    """Only a holder provably gone is skipped: a lease written elsewhere (another host, or another
    process namespace) lives until it expires, whatever pid it names."""
    backend = Store.open(str(tmp_path / "store"), create=True).backend
    for process in ({"host": "elsewhere", "boot": "b", "pid_namespace": 1, "pid": 2**22 + 7, "start": 1}, None):
        lease = {"holder": "elsewhere:99", "started": time.time(), "expires": time.time() + 300, "process": process}
        backend.put(f"{WRITERS_PREFIX}{uuid.uuid4().hex}.json", json.dumps(lease).encode())
    with pytest.raises(StoreBusyError, match=r"2 writer\(s\) still hold"):
        Store.open(str(tmp_path / "store")).gc(grace_seconds=0, wait_for_writers=0.5)
