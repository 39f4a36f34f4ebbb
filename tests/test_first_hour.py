"""The places a new user got stuck in the first hour, each as it now behaves."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lockgate.store import Store
from lockgate.store.errors import RefNotFoundError
from tests.registry_helpers import Registry, weights
from tests.servers import ROOT_DIR, start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a pipe sees it (stdout is not a terminal)."""
    base = {k: v for k, v in os.environ.items() if k != "LOCKGATE_STORE"}
    return subprocess.run(
        [LOCKGATE, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


# -- 3. a failed serve writes nothing -------------------------------------------------------


def test_serve_on_a_taken_port_says_so_and_writes_no_ledger_event(registry: Registry) -> None:
    registry.log_weights_model("portless", weights(1, rows=64, cols=4))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.run(
            [LOCKGATE, "serve", "models:/portless/1", "--port", str(port)],
            env={**os.environ, **registry.gateway_env()}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"port {port} is in use" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert time.monotonic() - started < 60
    store = Store.open(registry.store_root, create=True)
    assert not store.refs.repo_exists("lockgate-ledger"), "a gateway that never served wrote the ledger"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [("LOCKGATE_PORT", "abc", "valid integer"), ("LOCKGATE_GRPC_PORT", "0", "greater than or equal to 1")],
)
def test_a_bad_setting_is_named_in_one_line(tmp_path: Path, variable: str, value: str, says: str) -> None:
    proc = cli("serve", cwd=tmp_path, env={variable: value})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"error: {variable}: ") and says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- 4. short commit ids ----------------------------------------------------------------------


def test_unique_prefixes_of_eight_or_more_name_a_commit(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    first = store.commit_files("r", "main", [("f", b"one")]).commit_id
    second = store.commit_files("r", "main", [("f", b"two")]).commit_id
    assert store.resolve("r", first[:8]) == first
    assert store.resolve("r", second[:16]) == second
    assert store.resolve("r", f"{second[:12]}~1") == first
    with pytest.raises(RefNotFoundError):
        store.resolve("r", first[:7])  # shorter than 8: a branch or tag name, and there is none
    tree = store.commit(first).tree
    with pytest.raises(RefNotFoundError):
        store.resolve("r", tree[:12])  # a tree's prefix is not a commit


def test_short_ids_work_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    env = {"LOCKGATE_STORE": str(tmp_path / "store")}
    pushed = cli("store", "push", "f", "lockgate://r@main/f", "--json", cwd=tmp_path, env=env)
    commit = re.search(r'"commit_id": "([0-9a-f]{64})"', pushed.stdout)
    assert commit, pushed.stdout
    cat = cli("store", "cat", f"lockgate://r@{commit.group(1)[:12]}/f", cwd=tmp_path, env=env)
    assert cat.returncode == 0 and cat.stdout == "hello", cat.stderr


# -- 6. piped output is whole -----------------------------------------------------------------


def test_piped_output_is_never_cut(tmp_path: Path) -> None:
    deep = "/".join(["a-rather-long-directory-name"] * 6) + "/weights.bin"
    (tmp_path / "w").write_bytes(b"x" * 10)
    env = {"LOCKGATE_STORE": str(tmp_path / "store"), "COLUMNS": "80"}
    assert cli("store", "push", "w", f"lockgate://r@main/{deep}", cwd=tmp_path, env=env).returncode == 0
    listing = cli("store", "ls", "lockgate://r@main", cwd=tmp_path, env=env).stdout
    assert any(line.rstrip().endswith(deep) for line in listing.splitlines()), listing
    resolved = cli("resolve", f"lockgate://r@main/{deep}", cwd=tmp_path, env=env).stdout
    assert re.search(r"\b[0-9a-f]{64}\b", resolved), resolved


# -- 7. one error shape ----------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_in_lockgates_error_shape(registry: Registry) -> None:
    server = start_lockgate(registry.workdir, registry.gateway_env())
    try:
        missing = httpx.get(f"{server.url}/no/such/route")
        assert missing.status_code == 404 and set(missing.json()) == {"error_code", "message"}
        assert "/no/such/route" in missing.json()["message"]
        wrong = httpx.get(f"{server.url}/invocations")
        assert wrong.status_code == 405 and set(wrong.json()) == {"error_code", "message"}
        assert "POST" in wrong.json()["message"] and wrong.headers["Allow"] == "POST"
        unknown_endpoint = httpx.post(f"{server.url}/endpoints/ghost/invocations", content=b"{}")
        assert unknown_endpoint.status_code == 404 and set(unknown_endpoint.json()) == {"error_code", "message"}
    finally:
        server.stop()


# -- 8. one dataset source for one scheme ----------------------------------------------------


@pytest.mark.parametrize("first_import", ["mlflow", "lockgate.loader.dataset_source"])
def test_a_lockgate_dataset_source_does_not_warn(tmp_path: Path, first_import: str) -> None:
    store = Store.open(tmp_path / "store", create=True)
    store.commit_files("datasets", "main", [("t.csv", b"a\n1\n")])
    code = f"""
import warnings
import {first_import}
import mlflow, pandas as pd
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ds = mlflow.data.from_pandas(pd.DataFrame({{"a": [1]}}), source="lockgate://datasets@main/t.csv")
print(type(ds.source).__name__, ds.source.uri)
print([str(w.message) for w in caught if "multiple ways" in str(w.message)])
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "LOCKGATE_STORE": str(tmp_path / "store")},
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT_DIR,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, warned = proc.stdout.strip().splitlines()[-2:]
    assert first.startswith("LockgateDatasetSource lockgate://datasets@") and warned == "[]", proc.stdout


# -- 9. smaller things -----------------------------------------------------------------------


def test_pushing_the_same_bytes_again_says_no_changes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"same bytes")
    env = {"LOCKGATE_STORE": str(tmp_path / "store")}
    first = cli("store", "push", "f", "lockgate://r@main/f", cwd=tmp_path, env=env)
    assert "committed" in first.stdout and "MB/s" not in first.stdout, "no rate for a 10-byte push"
    again = cli("store", "push", "f", "lockgate://r@main/f", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "no changes" in again.stdout, again.stdout
    assert len(Store.open(tmp_path / "store").log("r")) == 1
    forced = cli("store", "push", "f", "lockgate://r@main/f", "--allow-empty", cwd=tmp_path, env=env)
    assert "committed" in forced.stdout and len(Store.open(tmp_path / "store").log("r")) == 2


def test_help_has_no_placeholders(tmp_path: Path) -> None:
    for command in (["deploy"], ["serve"], ["store", "push"], ["fetch"], ["lineage"]):
        text = cli(*command, "--help", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
        assert "{model_uri}" not in text and "{uri}" not in text, text
        flags = [line for line in text.splitlines() if "--json" in line or "--no-follow" in line]
        assert all("<bool>" not in line for line in flags), flags


def test_the_docs_stand_on_their_own() -> None:
    for doc in [ROOT_DIR / "README.md", *(ROOT_DIR / "docs").glob("*.md")]:
        assert "../shared" not in doc.read_text(), f"{doc.name} points outside the repository"


def test_the_plain_lineage_listing_shows_the_dataset_commit(registry: Registry) -> None:
    import mlflow
    import pandas as pd

    store = Store.open(registry.store_root, create=True)
    commit = store.commit_files("datasets", "main", [("t.csv", b"a,b,c\n1,2,3\n")]).commit_id
    dataset = mlflow.data.from_pandas(pd.DataFrame({"a": [1.0]}), source="lockgate://datasets@main/t.csv")
    registry.log_weights_model("lined", weights(1, rows=64, cols=4), dataset=dataset)
    server = start_lockgate(registry.workdir, registry.gateway_env(), "models:/lined/1", ready_path="/ready")
    try:
        listing = cli("lineage", "lined", "--gateway", server.url, cwd=registry.workdir).stdout
        assert f"dataset {commit}" in listing, listing
    finally:
        server.stop()
