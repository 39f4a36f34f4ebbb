"""``lockgate store ...`` as a user runs it: the real console script, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
DEST = "lockgate://models@main/fraud/model.bin"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
        [LOCKGATE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env or dict(os.environ)
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LOCKGATE_STORE", raising=False)
    (tmp_path / "model.bin").write_bytes(os.urandom(300_000))
    return tmp_path


def test_push_ls_cat_log_diff_tag(workdir: Path) -> None:
    first = json.loads(run("store", "push", "model.bin", DEST, "--json", cwd=workdir).stdout)
    assert first["bytes_new"] == 300_000 and first["bytes_reused"] == 0
    assert (workdir / ".lockgate" / "store" / "lockgate-store.json").exists(), "default store is ./.lockgate/store"

    edited = bytearray((workdir / "model.bin").read_bytes())
    edited[150_000:150_010] = b"0123456789"
    (workdir / "model.bin").write_bytes(bytes(edited))
    second = run("store", "push", "model.bin", DEST, "-m", "edit", cwd=workdir).stdout
    assert "committed" in second and "reused" in second

    listing = run("store", "ls", "lockgate://models@main/fraud", cwd=workdir).stdout
    assert "fraud/model.bin" in listing
    cat = subprocess.run(
        [LOCKGATE, "store", "cat", DEST.replace("@main", "@main~1")], cwd=workdir, capture_output=True, check=True
    )
    assert len(cat.stdout) == 300_000 and cat.stdout != bytes(edited)
    ranged = subprocess.run(
        [LOCKGATE, "store", "cat", "lockgate://models@main/fraud/model.bin", "--offset", "150000", "--length", "10"],
        cwd=workdir,
        capture_output=True,
        check=True,
    )
    assert ranged.stdout == b"0123456789"

    log = json.loads(run("store", "log", "lockgate://models@main", "--json", cwd=workdir).stdout)
    assert len(log) == 2 and log[1]["commit"] == first["commit_id"]
    assert log[0]["message"] == "edit"
    old = run("store", "log", "lockgate://models@main", "--at", log[1]["time"], "--json", cwd=workdir).stdout
    assert [c["commit"] for c in json.loads(old)] == [first["commit_id"]]

    diff = run("store", "diff", "lockgate://models@main~1", "lockgate://models@main", cwd=workdir).stdout
    assert "M fraud/model.bin" in diff

    run("store", "tag", f"lockgate://models@{first['commit_id']}", "v1", cwd=workdir)
    moved = run("store", "tag", "lockgate://models@main", "v1", cwd=workdir, ok=False)
    assert moved.returncode == 1 and "already exists" in moved.stderr and "Traceback" not in moved.stderr
    assert "verifies" in run("store", "verify", cwd=workdir).stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("store", "ls", "lockgate://nope@main"), "unknown repository 'nope'"),
        (("store", "ls", "lockgate://models@dev"), "no branch, tag or commit 'dev'"),
        (("store", "ls", "lockgate://models@main/missing"), "no file or directory 'missing'"),
        (("store", "ls", "lockgate://models@main~9"), "goes back past the first commit"),
        (("store", "ls", "s3:/x"), "not a lockgate URI"),
        (("store", "ls", "lockgate://models@main", "--at", "yesterday-ish"), "cannot read time"),
        (("store", "log", "lockgate://models@main", "--at", "2001-01-01"), "did not exist yet"),
        (("store", "ls", "lockgate://models@main", "--store", "/nonexistent/lockgate"), "does not exist"),
        (("store", "push", "missing.bin", "lockgate://models@main/x"), "does not exist"),
    ],
)
def test_errors_are_one_clear_line(workdir: Path, args: tuple[str, ...], needle: str) -> None:
    run("store", "push", "model.bin", "lockgate://models@main/m.bin", cwd=workdir)
    proc = run(*args, cwd=workdir, ok=False)
    assert proc.returncode == 1
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_teaches(workdir: Path) -> None:
    text = run("store", "--help", cwd=workdir).stdout
    assert "lockgate://REPO@REF/PATH" in text
    assert "LOCKGATE_STORE" in text
    push_help = run("store", "push", "--help", cwd=workdir).stdout
    assert "Example" in push_help
