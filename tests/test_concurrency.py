"""Many writers on one branch: compare-and-swap plus rebase loses nothing, on disk and on S3."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lockgate.store import Store

WRITERS = 8
ROOT_DIR = Path(__file__).resolve().parents[1]


def _check_history(store: Store, expected_commits: set[str]) -> None:
    history = [cid for cid, _ in store.log("shared", "main")]
    assert len(history) == len(set(history))
    assert expected_commits <= set(history), "a commit was lost from the branch history"
    assert len(history) == len(expected_commits)
    head_files = store.list_files(store.resolve("shared", "main"))
    assert sorted(head_files) == sorted(f"w/{i}.bin" for i in range(WRITERS)), "a writer's file was overwritten"


def test_threads_commit_to_one_branch(shared_root: tuple[str, str | None]) -> None:
    root, endpoint = shared_root

    def write(index: int) -> str:
        # Each thread opens its own Store, as separate clients would.
        store = Store.open(root, s3_endpoint_url=endpoint)
        data = f"writer {index}\n".encode() * 5000
        return store.commit_files("shared", "main", [(f"w/{index}.bin", data)]).commit_id

    with ThreadPoolExecutor(WRITERS) as pool:
        commits = set(pool.map(write, range(WRITERS)))
    _check_history(Store.open(root, s3_endpoint_url=endpoint), commits)


@pytest.mark.slow
def test_processes_commit_to_one_branch(shared_root: tuple[str, str | None]) -> None:
    root, endpoint = shared_root
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.workers", "commit-one", root, endpoint or "", str(i)],
            cwd=ROOT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(WRITERS)
    ]
    commits = set()
    for proc in procs:
        out, errors = proc.communicate(timeout=300)
        assert proc.returncode == 0, errors.decode()
        commits.add(out.decode().strip())
    _check_history(Store.open(root, s3_endpoint_url=endpoint), commits)
