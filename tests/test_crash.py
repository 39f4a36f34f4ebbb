"""A writer SIGKILLed in the middle of a push leaves the branch where it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.store import Store

ROOT_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sigkill_mid_push_leaves_branch_at_previous_commit(shared_root: tuple[str, str | None], tmp_path: Path) -> None:
    root, endpoint = shared_root
    store = Store.open(root, s3_endpoint_url=endpoint)
    before = store.commit_files("models", "main", [("small.bin", b"before")]).commit_id
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(150 * 1024 * 1024))  # more than two packs

    proc = subprocess.run(
        [sys.executable, "-m", "tests.workers", "push-and-die", root, endpoint or "", str(big), "0.7"],
        cwd=ROOT_DIR, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    fresh = Store.open(root, s3_endpoint_url=endpoint)
    assert fresh.resolve("models", "main") == before
    assert sorted(fresh.list_files(before)) == ["small.bin"]
    # The next push succeeds and its file reads back intact.
    after = fresh.push(big, "models", "main", "big.bin")
    assert fresh.resolve("models", "main") == after.commit_id
    assert fresh.stat(after.commit_id, "big.bin").size == big.stat().st_size
    assert fresh.verify(["models"]).ok
