"""The experiment workflow around the store: branches, copy in (local, a real SeaweedFS bucket,
``runs:/``) and out, pandas and pyarrow reading ``lockgate://`` at any ref, and time travel in
every URI (CLI, fsspec, the dataset source, a gateway deploy)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import httpx
import mlflow
import numpy as np
import pandas as pd
import pyarrow.dataset as pa_dataset
import pytest

from lockgate.store import Store
from lockgate.store.errors import (
    BranchExistsError,
    IntegrityError,
    InvalidURIError,
    ProtectedRefError,
    RefNotFoundError,
)
from lockgate.store.layout import pack_key
from lockgate.store.objects import format_time
from lockgate.store.uri import parse_uri
from tests.registry_helpers import Registry, weights
from tests.servers import SeaweedFS, start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKGATE, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def moment_between() -> str:
    """A time strictly after every commit so far and before the next one."""
    time.sleep(0.05)
    moment = format_time(datetime.now(UTC))
    time.sleep(0.05)
    return moment


# -- branches --------------------------------------------------------------------------------


def test_branches_from_a_tag_a_commit_a_prefix_back_and_a_time(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    first = store.commit_files("d", "main", [("f", b"1")]).commit_id
    store.tag("d", "v1", first)
    between = moment_between()
    second = store.commit_files("d", "main", [("f", b"2")]).commit_id
    assert store.create_branch("d", "from-tag", "v1") == first
    assert store.create_branch("d", "from-commit", second) == second
    assert store.create_branch("d", "from-prefix", second[:10]) == second
    assert store.create_branch("d", "from-back", "main~1") == first
    assert store.create_branch("d", "from-time", "main", parse_uri(f"lockgate://d@main@{{{between}}}").at) == first
    with pytest.raises(BranchExistsError, match="already exists"):
        store.create_branch("d", "from-tag", "main")
    assert store.resolve("d", "from-tag") == first, "a refused duplicate must not move the branch"
    names = [name for name, _head, _commit in store.branch_heads("d")]
    assert set(names) == {"main", "from-tag", "from-commit", "from-prefix", "from-back", "from-time"}
    # A commit on the branch does not touch main: it forked.
    forked = store.commit_files("d", "from-tag", [("g", b"x")])
    assert forked.parent_id == first and store.resolve("d", "main") == second


def test_delete_protects_the_default_branch_and_the_ledger(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    head = store.commit_files("d", "main", [("f", b"1")]).commit_id
    store.create_branch("d", "exp", "main")
    assert store.delete_branch("d", "exp") == head and not store.branch_exists("d", "exp")
    with pytest.raises(ProtectedRefError, match="--force"):
        store.delete_branch("d", "main")
    store.commit_files("lockgate-ledger", "main", [("events/x/1.json", b"{}")])
    store.create_branch("lockgate-ledger", "side", "main")
    for name in ("main", "side"):
        with pytest.raises(ProtectedRefError, match="ledger"):
            store.delete_branch("lockgate-ledger", name, force=True)
    with pytest.raises(RefNotFoundError):
        store.delete_branch("d", "never-was")
    assert store.delete_branch("d", "main", force=True) == head


def test_eight_concurrent_creations_of_one_branch_exactly_one_wins(shared_root: tuple[str, str | None]) -> None:
    root, endpoint = shared_root
    store = Store.open(root, s3_endpoint_url=endpoint)
    heads = [store.commit_files("race", "main", [("f", f"{i}".encode())]).commit_id for i in range(8)]
    env = {"LOCKGATE_STORE": root, **({"LOCKGATE_S3_ENDPOINT_URL": endpoint} if endpoint else {})}
    procs = [
        subprocess.Popen(
            [LOCKGATE, "store", "branch", f"lockgate://race@{head}", "winner"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for head in heads
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _ in results) == [0] + [1] * 7, results
    assert all("already exists" in err for code, err in results if code == 1)
    winner = heads[[code for code, _ in results].index(0)]
    assert store.resolve("race", "winner") == winner


def test_pushing_to_a_missing_branch_asks_for_create(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    env = {"LOCKGATE_STORE": str(tmp_path / "store")}
    assert cli("store", "push", "f", "lockgate://d@main/f", env=env, cwd=tmp_path).returncode == 0
    refused = cli("store", "push", "f", "lockgate://d@exp/f", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "--create" in refused.stderr, refused.stderr
    store = Store.open(tmp_path / "store")
    assert not store.branch_exists("d", "exp"), "a refused push must create nothing"
    (tmp_path / "f").write_bytes(b"changed")
    created = cli("store", "push", "f", "lockgate://d@exp/f", "--create", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert store.log("d", "exp")[-1][0] == store.resolve("d", "main"), "--create forks from main"
    listing = cli("store", "branches", "d", env=env, cwd=tmp_path).stdout
    assert "exp" in listing and "main" in listing


# -- copy in and out --------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.slow
def test_copy_a_50_mb_s3_prefix_in_twice(seaweed: SeaweedFS, s3_root: str, tmp_path: Path) -> None:
    client = seaweed.client()
    bucket = "lockgate-raw-data"
    client.create_bucket(Bucket=bucket)
    originals = {f"fraud/2026-11/part-{i}.bin": os.urandom(10_000_000 + i) for i in range(5)}
    originals["fraud/2026-11/nested/labels.csv"] = b"id,label\n" + b"1,0\n" * 1000
    for key, data in originals.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    client.put_object(Bucket=bucket, Key="fraud/other/ignored.bin", Body=b"not under the prefix")
    env = {"LOCKGATE_STORE": s3_root, "LOCKGATE_S3_ENDPOINT_URL": seaweed.endpoint}
    Store.open(s3_root, create=True, s3_endpoint_url=seaweed.endpoint).close()
    dest = "lockgate://datasets@main/fraud"
    first = cli("store", "cp", "-r", f"s3://{bucket}/fraud/2026-11", dest, "--json", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    first_result = json.loads(first.stdout)
    assert first_result["bytes_new"] == sum(len(v) for v in originals.values()) and first_result["files"] == 6
    again = cli("store", "cp", "-r", f"s3://{bucket}/fraud/2026-11", dest, "--json", env=env, cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["bytes_new"] == 0, again.stdout
    assert json.loads(again.stdout)["changed"] is False
    store = Store.open(s3_root, s3_endpoint_url=seaweed.endpoint)
    commit = store.resolve("datasets", "main")
    for key, data in originals.items():
        assert store.read_file(commit, "fraud/" + key.removeprefix("fraud/2026-11/")) == data
    assert not any("ignored" in p for p in store.list_files(commit))
    out = cli("store", "cp", "lockgate://datasets@main/fraud/nested", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert (
        out.returncode == 0
        and (tmp_path / "out" / "labels.csv").read_bytes() == originals["fraud/2026-11/nested/labels.csv"]
    )


@pytest.mark.s3
def test_copy_in_errors_change_nothing(seaweed: SeaweedFS, s3_root: str, tmp_path: Path) -> None:
    client = seaweed.client()
    client.create_bucket(Bucket="lockgate-raw-errors")
    client.put_object(Bucket="lockgate-raw-errors", Key="dir/a.bin", Body=b"a")
    env = {"LOCKGATE_STORE": s3_root, "LOCKGATE_S3_ENDPOINT_URL": seaweed.endpoint}
    Store.open(s3_root, create=True, s3_endpoint_url=seaweed.endpoint).close()
    missing = cli("store", "cp", "-r", "s3://lockgate-raw-errors/nothing-here", "lockgate://d@main/x", env=env,
                  cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1 and "nothing at s3://lockgate-raw-errors/nothing-here" in missing.stderr
    no_r = cli("store", "cp", "s3://lockgate-raw-errors/dir", "lockgate://d@main/x", env=env, cwd=tmp_path)
    assert no_r.returncode == 1 and "-r" in no_r.stderr
    refused = cli("store", "cp", "-r", "s3://lockgate-raw-errors/dir", "lockgate://d@main/x",
                  env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"}, cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 1 and "refused the credentials" in refused.stderr, refused.stderr
    for proc in (missing, no_r, refused):
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not Store.open(s3_root, s3_endpoint_url=seaweed.endpoint).refs.repo_exists("d")


def test_copy_in_from_a_run_on_a_sqlite_registry(registry: Registry, tmp_path: Path) -> None:
    mlflow.set_experiment(experiment_id=registry.experiment("plain", location=(tmp_path / "art").as_uri()))
    with mlflow.start_run() as run:
        (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
        mlflow.log_artifact(str(tmp_path / "metrics.csv"), artifact_path="eval")
        (tmp_path / "weights.bin").write_bytes(os.urandom(300_000))
        mlflow.log_artifact(str(tmp_path / "weights.bin"), artifact_path="eval/deep")
    env = registry.gateway_env()
    proc = cli("store", "cp", f"runs:/{run.info.run_id}/eval", "lockgate://runs@main/exp1", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store = Store.open(registry.store_root)
    commit = store.resolve("runs", "main")
    assert store.read_file(commit, "exp1/metrics.csv") == (tmp_path / "metrics.csv").read_bytes()
    assert store.read_file(commit, "exp1/deep/weights.bin") == (tmp_path / "weights.bin").read_bytes()
    bad = cli("store", "cp", "runs:/0123456789abcdef/none", "lockgate://runs@main/x", env=env, cwd=tmp_path)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


# -- pandas, pyarrow and fsspec ---------------------------------------------------------------


@pytest.fixture
def dataset_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    root = tmp_path / "store"
    monkeypatch.setenv("LOCKGATE_STORE", str(root))
    store = Store.open(root, create=True)
    frames, raw = {}, {}
    for version in (1, 2):
        frame = pd.DataFrame({"x": np.arange(20_000) * version, "y": np.random.default_rng(version).random(20_000)})
        parquet = io.BytesIO()
        frame.to_parquet(parquet)
        raw[version] = (frame.to_csv(index=False).encode(), parquet.getvalue())
        frames[version] = frame
        commit = store.commit_files(
            "datasets", "main", [("train.csv", raw[version][0]), ("pq/train.parquet", raw[version][1])]
        ).commit_id
        if version == 1:
            store.tag("datasets", "v1", commit)
            first_commit = commit
            between = moment_between()
    return {"store": store, "frames": frames, "raw": raw, "first": first_commit, "between": between}


def test_pandas_and_pyarrow_read_every_kind_of_ref(dataset_store: dict[str, object]) -> None:
    frames: dict[int, pd.DataFrame] = dataset_store["frames"]  # type: ignore[assignment]
    raw: dict[int, tuple[bytes, bytes]] = dataset_store["raw"]  # type: ignore[assignment]
    first = str(dataset_store["first"])
    refs = {"main": 2, "v1": 1, first: 1, first[:10]: 1, "main~1": 1, f"main@{{{dataset_store['between']}}}": 1}
    fs = fsspec.filesystem("lockgate")
    for ref, version in refs.items():
        base = f"lockgate://datasets@{ref}"
        pd.testing.assert_frame_equal(pd.read_csv(f"{base}/train.csv"), frames[version])
        pd.testing.assert_frame_equal(pd.read_parquet(f"{base}/pq/train.parquet"), frames[version])
        assert fs.cat_file(f"{base}/train.csv") == raw[version][0], ref
        assert fs.cat_file(f"{base}/pq/train.parquet", start=-8) == raw[version][1][-8:]  # a parquet footer read
        with fsspec.open(f"{base}/train.csv") as handle:
            handle.seek(100)
            assert handle.read(50) == raw[version][0][100:150]
        table = pa_dataset.dataset(f"datasets@{ref}/pq", filesystem=fs, format="parquet").to_table()
        assert table.num_rows == 20_000
    assert {e["name"] for e in fs.ls("lockgate://datasets@v1")} == {"datasets@v1/train.csv", "datasets@v1/pq"}
    assert fs.info("lockgate://datasets@v1/pq")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info("lockgate://datasets@v1/nope.csv")
    with pytest.raises(FileNotFoundError):
        pd.read_csv("lockgate://datasets@no-such-branch/train.csv")
    with pytest.raises(NotImplementedError, match="read-only"):
        fs.open("lockgate://datasets@main/new.csv", "wb")


def test_a_corrupted_chunk_raises_and_returns_no_bytes(dataset_store: dict[str, object]) -> None:
    store: Store = dataset_store["store"]  # type: ignore[assignment]
    commit = store.resolve("datasets", "main")
    victim = store.file_manifest(commit, "train.csv").chunks[3]
    path = Path(os.environ["LOCKGATE_STORE"]) / pack_key(victim.pack_id)
    data = bytearray(path.read_bytes())
    data[victim.offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = fsspec.filesystem("lockgate", skip_instance_cache=True, store=os.environ["LOCKGATE_STORE"])
    with pytest.raises(IntegrityError):
        fresh.cat_file("lockgate://datasets@main/train.csv")
    with (
        pytest.raises(IntegrityError),
        fresh.open("lockgate://datasets@main/train.csv", block_size=16 * 1024) as handle,
    ):
        handle.read()


# -- time travel in every URI ----------------------------------------------------------------


def test_time_travel_errors_are_clear(dataset_store: dict[str, object], tmp_path: Path) -> None:
    env = {"LOCKGATE_STORE": os.environ["LOCKGATE_STORE"]}
    with pytest.raises(InvalidURIError, match="in the future"):
        parse_uri("lockgate://datasets@main@{2999-01-01T00:00:00Z}/train.csv")
    before = cli("store", "ls", "lockgate://datasets@main@{2001-01-01T00:00:00Z}", env=env, cwd=tmp_path)
    assert before.returncode == 1 and "did not exist yet" in before.stderr
    unknown = cli("store", "cat", "lockgate://datasets@nope/train.csv", env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "no branch, tag or commit 'nope'" in unknown.stderr
    future = cli("store", "log", "lockgate://datasets@main@{2999-01-01}", env=env, cwd=tmp_path)
    assert future.returncode == 1 and "in the future" in future.stderr
    for proc in (before, unknown, future):
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_time_travel_through_the_dataset_source_and_a_deploy(registry: Registry) -> None:
    store = Store.open(registry.store_root, create=True)
    old = store.commit_files("datasets", "main", [("t.csv", b"a,b,c\n1,2,3\n")]).commit_id
    between = moment_between()
    store.commit_files("datasets", "main", [("t.csv", b"a,b,c\n4,5,6\n")])
    dataset = mlflow.data.from_pandas(
        pd.DataFrame({"a": [1.0]}), source=f"lockgate://datasets@main@{{{between}}}/t.csv"
    )
    assert dataset.source.uri == f"lockgate://datasets@{old}/t.csv"

    registry.log_weights_model("travel", weights(1, rows=64, cols=4))
    first_weights = store.resolve("models", "main")
    model_between = moment_between()
    registry.log_weights_model("travel", weights(2, rows=64, cols=4))
    version = registry.client.get_model_version("travel", "1")
    logged = registry.client.get_logged_model(version.source.removeprefix("models:/"))
    path = logged.tags["lockgate.uri"].split("/", 3)[3]
    server = start_lockgate(registry.workdir, registry.gateway_env())
    try:
        uri = f"lockgate://models@main@{{{model_between}}}/{path}"
        answer = httpx.post(f"{server.url}/admin/endpoints", json={"name": "travel", "model_uri": uri}, timeout=120)
        assert answer.status_code == 200, answer.text
        state = httpx.get(f"{server.url}/endpoints/travel").json()
        assert state["weights_commit"] == first_weights and state["follow"] is False
        assert state["model_uri"] == uri
    finally:
        server.stop()
