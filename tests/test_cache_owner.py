"""One owner of the cache directory: what the gateway derives from a version (its ONNX graphs,
its skew profile) lives inside that version's directory and is evicted with it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from lockgate.loader.atomic_file import write_atomically
from lockgate.loader.cache import DERIVED, ModelCache
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.parent_watch import PARENT_PID_ENV
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, weights
from tests.servers import start_lockgate

ROOT = Path(__file__).resolve().parents[1]


def test_derived_artifacts_live_and_die_with_their_version(registry: Registry) -> None:
    store = Store.open(registry.store_root, create=True)
    frame = pd.DataFrame(np.random.default_rng(0).random((200, 3)), columns=["a", "b", "c"])
    store.commit_files("datasets", "main", [("t.csv", frame.to_csv(index=False).encode())])
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_pandas(frame, source="lockgate://datasets@main/t.csv"), context="training")
        model = LinearRegression().fit(frame, frame.sum(axis=1))
        mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="owned",
            input_example=frame.head(3),
        )
    cache_dir = registry.workdir / "cache"
    server = start_lockgate(registry.workdir, registry.gateway_env(), "models:/owned/1", ready_path="/ready")
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/endpoints/owned").json()["serving"]["onnx_pending"]:
            assert time.monotonic() < deadline, "the ONNX conversion did not settle"
            time.sleep(0.2)
        key = httpx.get(f"{server.url}/endpoints/owned").json()["load_report"]["key"]
    finally:
        server.stop()
    owned = ["leases", "locks", "partial", "pins", "trash", "versions"]
    assert sorted(p.name for p in cache_dir.iterdir() if p.is_dir()) == owned
    derived = cache_dir / "versions" / key / DERIVED
    assert (derived / "onnx" / "verdict.json").is_file()
    assert list((derived / "onnx").glob("model-*.onnx")), "the version's ONNX graph lives with it"
    assert list((derived / "profiles").glob("*.json")), "the version's skew profile lives with it"
    ModelCache(cache_dir).evict(key)
    assert not (cache_dir / "versions" / key).exists()
    assert not list(cache_dir.rglob("*.onnx")) and not list(cache_dir.rglob("profiles")), "evicted with it"


def test_the_cache_reads_back_its_files_without_derived_artifacts(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    (tmp_path / "versions" / "k").mkdir()
    (tmp_path / "versions" / "k" / ".lockgate-version.json").write_bytes(b'{"size": 3, "files": {}}')
    assert cache.derived_dir("k") == tmp_path / "versions" / "k" / DERIVED and cache.derived_dir("k").is_dir()
    assert cache.used_bytes() == 3


def test_a_stray_version_directory_does_not_block_its_fetch(registry: Registry, tmp_path: Path) -> None:
    """A directory under versions/ without the version's metadata (what a derived artifact
    written after its version's eviction used to leave) is set aside, and the verified files
    take its place: found when an orphaned conversion blocked a version's fetch for good."""
    registry.log_weights_model("stray", weights(4))
    loader = ModelLoader(Resolver(open_configured_store, tracking_uri=registry.tracking_uri),
                         ModelCache(tmp_path / "cache"), open_configured_store)  # fmt: skip
    resolved = loader.resolve("models:/stray/1")
    key = resolved.weights.cache_key
    stray = tmp_path / "cache" / "versions" / key / DERIVED / "onnx"
    stray.mkdir(parents=True)
    (stray / "model-float64.onnx").write_bytes(b"not from this version's files")
    loaded = loader.load(resolved)
    assert loader.cache.is_complete(key)
    assert not (tmp_path / "cache" / "versions" / key / DERIVED / "onnx").exists(), "the stray graph is set aside"
    assert np.array_equal(loaded.model.native.unwrap_python_model().weights, weights(4))


def test_a_graph_for_an_evicted_version_is_not_written(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    (tmp_path / "versions" / "k").mkdir()
    (tmp_path / "versions" / "k" / ".lockgate-version.json").write_bytes(b'{"size": 3, "files": {}}')
    graph = cache.derived_dir("k") / "onnx" / "model-float64.onnx"
    cache.evict("k")
    with pytest.raises(FileNotFoundError):
        write_atomically(graph, b"graph")
    assert not (tmp_path / "versions" / "k").exists(), "the evicted version stays gone"


def test_a_conversion_child_exits_with_its_gateway(tmp_path: Path) -> None:
    """The ONNX conversion runs in a child process; when the gateway dies (SIGKILL, or a Ctrl-C
    that does not wait for the thread running the conversion), the child must not live on and
    write into a cache that nobody owns. Here a stand-in gateway starts a child that would sleep
    for a minute under the same watch, and dies at once."""
    pid_file = tmp_path / "child.pid"
    child = (
        "import os, sys, time; from loader.parent_watch import exit_with_parent; "
        f"exit_with_parent(int(os.environ['{PARENT_PID_ENV}']), interval=0.05); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    gateway = (
        "import os, subprocess, sys, time; "
        f"env = {{**os.environ, '{PARENT_PID_ENV}': str(os.getpid())}}; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}], env=env); "
        f"[time.sleep(0.05) for _ in range(600) if not os.path.exists({str(pid_file)!r})]; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", gateway], check=True, cwd=ROOT, timeout=60)
    child_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # a bound on the wait, not a timing assertion
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the conversion child outlived its gateway"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited: only its parent (init) has not reaped it yet
