"""Crafted store contents are untrusted input: a tree whose paths climb out of the cache, or
point at absolute paths, must never write a byte outside the directory it materializes into.
Tried through every reader: ``lockgate fetch``, a gateway deploy, ``Store.checkout`` and
``store verify``; and the writer must refuse paths that could never be checked out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lockgate.store import Store
from lockgate.store.errors import CorruptObjectError, InvalidPathError, InvalidURIError
from lockgate.store.paths import check_path, contained
from tests.crafted_store import craft_branch, write_raw_tree
from tests.servers import start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def hostile_paths(tmp_path: Path) -> dict[str, bytes]:
    outside = tmp_path / "outside"
    # "model/../../../outside/x" climbs out of partial/<key>/ in the cache; "model/" + an
    # absolute path made an absolute target once the "model/" prefix was cut off.
    return {
        "model/MLmodel": b"flavors: {}\n",
        "model/../../../../outside/x": b"relative escape",
        f"model/{outside}/abs-x": b"absolute escape",
    }


def nothing_escaped(tmp_path: Path) -> None:
    assert not (tmp_path / "outside").exists(), "a crafted tree wrote outside the cache"
    assert not list(tmp_path.rglob("abs-x")), "a crafted tree wrote at an absolute path"
    assert not list(tmp_path.rglob("x")) or all("outside" not in str(p) for p in tmp_path.rglob("x"))


@pytest.fixture
def evil_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    store = Store.open(root, create=True)
    craft_branch(store, "evil", hostile_paths(tmp_path))
    store.close()
    return root


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is the point
        [LOCKGATE, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=cwd
    )


def test_fetch_of_a_crafted_tree_writes_nothing_outside_and_fails(evil_store: Path, tmp_path: Path) -> None:
    env = {"LOCKGATE_STORE": str(evil_store), "LOCKGATE_CACHE_DIR": str(tmp_path / "cache" / "deep" / "er")}
    proc = cli("fetch", "lockgate://evil@main/model", env=env, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "unsafe path" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    nothing_escaped(tmp_path)


def test_verify_reports_a_crafted_tree_as_damage(evil_store: Path, tmp_path: Path) -> None:
    proc = cli("store", "verify", env={"LOCKGATE_STORE": str(evil_store)}, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "unsafe path" in proc.stdout + proc.stderr


def test_checkout_of_a_crafted_tree_refuses(evil_store: Path, tmp_path: Path) -> None:
    store = Store.open(evil_store)
    commit = store.resolve("evil", "main")
    with pytest.raises(CorruptObjectError, match="unsafe path"):
        store.checkout(commit, "model", tmp_path / "checkout" / "a" / "b")
    nothing_escaped(tmp_path)


def test_gateway_deploy_of_a_crafted_tree_is_refused(evil_store: Path, tmp_path: Path) -> None:
    env = {
        "LOCKGATE_STORE": str(evil_store),
        "LOCKGATE_CACHE_DIR": str(tmp_path / "cache" / "deep" / "er"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    server = start_lockgate(tmp_path, env)
    try:
        answer = httpx.post(
            f"{server.url}/admin/endpoints",
            json={"name": "evil", "model_uri": "lockgate://evil@main/model"},
            timeout=60,
        )
        assert answer.status_code == 502, answer.text
        assert answer.json()["error_code"] == "DATA_LOSS" and "unsafe path" in answer.json()["message"]
        assert httpx.get(f"{server.url}/ping").status_code == 200
    finally:
        server.stop()
    nothing_escaped(tmp_path)


def test_a_file_that_is_also_a_directory_is_damage(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    manifest = store.tree(store.commit_files("r", "main", [("a", b"x")]).commit_id).entries["a"].manifest_id
    tree_id = write_raw_tree(store, {"a": (manifest, 1), "a/b": (manifest, 1)})
    store.objects._cache.clear()
    with pytest.raises(CorruptObjectError, match="both a file and a directory"):
        store.objects.tree(tree_id)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("model/a\x00b", "character"),
        ("model/a\nb", "character"),
        ("model/" + "x" * 300, "segment of 300 bytes"),
        ("/".join(["d" * 200] * 21), "4,096"),
        ("model/é" * 1 + "e" * 254, "segment of 256 bytes"),
    ],
)
def test_the_writer_refuses_paths_it_could_never_check_out(tmp_path: Path, path: str, problem: str) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(InvalidPathError, match=problem):
        store.commit_files("r", "main", [(path, b"bytes")])
    assert not store.refs.repo_exists("r"), "a refused push must write nothing, not even the repository"


def test_the_cli_refuses_a_bad_destination_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    env = {"LOCKGATE_STORE": str(tmp_path / "store")}
    proc = cli("store", "push", "f", "lockgate://r@main/" + "y" * 300, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "limit is 255" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    "path", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a/", "a\\b", "a\x7fb", "a\u0085b", "x" * 256]
)
def test_check_path_refuses(path: str) -> None:
    with pytest.raises(InvalidPathError):
        check_path(path)


@pytest.mark.parametrize("path", ["a", "a/b.c", "dir/ü-ñ/файл", "x" * 255, ".hidden/..ok"])
def test_check_path_accepts(path: str) -> None:
    assert check_path(path) == path


def test_contained_refuses_a_symlink_out(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidPathError, match="outside"):
        contained(base, "link/escape")
    assert contained(base, "ok/file") == base / "ok" / "file"


def test_invalid_path_error_is_an_invalid_uri_error() -> None:
    # Callers that already report malformed URIs in one line report bad paths the same way.
    assert issubclass(InvalidPathError, InvalidURIError)
