"""History retention in `lockgate store gc` (`--keep-last`, `--keep-since`): old history goes,
the cut is recorded, and walks, verify and later collections read it as the end of history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from lockgate.store import Store
from lockgate.store.errors import IntegrityError, RefNotFoundError
from lockgate.store.history_retention import HistoryRetention, read_cuts
from lockgate.store.layout import object_key

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def _data(seed: int, size: int = 300_000) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _pack_bytes(store: Store) -> int:
    return sum(info.size for info in store.backend.list_info("packs/"))


def _five_commits(store: Store) -> list[str]:
    return [store.commit_files("models", "main", [("w.bin", _data(seed))]).commit_id for seed in range(5)]


def test_keep_last_drops_older_history_and_records_the_cut(store: Store) -> None:
    commits = _five_commits(store)
    before = _pack_bytes(store)
    report = store.gc(grace_seconds=0, retention=HistoryRetention(keep_last=2))
    assert report.history_cuts == 1
    assert report.freed["packs"].count == 3, "the three dropped versions' packs go"
    assert _pack_bytes(store) < before
    assert [c for c, _ in store.log("models", "main")] == [commits[4], commits[3]]
    assert store.read_file(store.resolve("models", "main~1"), "w.bin") == _data(3)
    with pytest.raises(RefNotFoundError, match="first kept commit"):
        store.resolve("models", "main~2")
    assert read_cuts(store.backend) == {commits[3]: frozenset({commits[2]})}
    # Time travel to before the oldest kept commit names retention, not "did not exist yet".
    before_kept = store.log("models", "main")[-1][1].datetime - timedelta(microseconds=1)
    with pytest.raises(RefNotFoundError, match="older history was dropped by gc retention"):
        store.resolve("models", "main", at=before_kept)
    assert store.verify().ok, "a recorded cut is the end of history, not damage"
    # A later collection with the default (keep all) reads the cut too: nothing more goes.
    again = store.gc(grace_seconds=0)
    assert again.bytes_freed == 0 and again.history_cuts == 0


def test_a_tag_keeps_its_commit_and_the_default_keeps_everything(store: Store) -> None:
    commits = _five_commits(store)
    store.tag("models", "v1", commits[0])
    assert store.gc(grace_seconds=0).bytes_freed == 0, "the default keeps all history"
    report = store.gc(grace_seconds=0, retention=HistoryRetention(keep_last=1))
    assert report.freed["packs"].count == 3  # versions 2, 3 and 4; the tag holds 1, the branch 5
    assert store.read_file(commits[0], "w.bin") == _data(0)
    assert [c for c, _ in store.log("models", "main")] == [commits[4]]
    assert store.verify().ok


def test_keep_since_keeps_recent_commits(store: Store) -> None:
    old = [store.commit_files("models", "main", [("w.bin", _data(seed))]).commit_id for seed in (10, 11)]
    time.sleep(0.05)
    since = time.time()
    recent = [store.commit_files("models", "main", [("w.bin", _data(seed))]).commit_id for seed in (12, 13)]
    report = store.gc(grace_seconds=0, retention=HistoryRetention(keep_since=since))
    assert [c for c, _ in store.log("models", "main")] == recent[::-1]
    assert report.freed["packs"].count == 2 and not any(store.backend.exists(object_key(c)) for c in old)
    # Either rule keeps a commit: with keep_last=3 too, one old commit would have stayed.
    assert store.verify().ok


def test_dry_run_records_no_cut_and_deletes_nothing(store: Store) -> None:
    _five_commits(store)
    before = _pack_bytes(store)
    report = store.gc(grace_seconds=0, dry_run=True, retention=HistoryRetention(keep_last=1))
    assert report.history_cuts == 1 and report.bytes_freed > 0
    assert _pack_bytes(store) == before and read_cuts(store.backend) == {}
    assert len(store.log("models", "main")) == 5


def test_a_missing_parent_that_is_not_recorded_is_still_damage(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"), create=True)
    commits = _five_commits(store)
    store.backend.delete(object_key(commits[1]))
    store = Store.open(str(tmp_path / "store"))  # a process that never cached the commit
    assert not store.verify().ok
    with pytest.raises(IntegrityError, match="damaged"):
        store.gc(grace_seconds=0)


def test_keep_last_must_keep_the_ref_itself() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HistoryRetention(keep_last=0)


def test_the_cli_takes_the_policy(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(str(root), create=True)
    _five_commits(store)
    env = {**os.environ, "LOCKGATE_STORE": str(root)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOCKGATE, "store", "gc", "--grace", "0s", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    bad = run("--keep-since", "whenever")
    assert bad.returncode == 2 and "--keep-since" in bad.stderr
    assert run("--keep-last", "0").returncode == 2
    done = run("--keep-last", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["history_cuts"] == 1
    text = run("--keep-last", "1")
    assert text.returncode == 0 and "history cut behind 1 commits" in text.stdout, text.stdout
    log = subprocess.run([LOCKGATE, "store", "log", "lockgate://models@main", "--json"], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert log.returncode == 0, log.stderr
    assert len(json.loads(log.stdout)) == 1, "the log ends at the cut"
    verify = subprocess.run([LOCKGATE, "store", "verify"], env=env, capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
