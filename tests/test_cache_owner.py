"""One owner of the cache directory: what the gateway derives from a version (its ONNX graphs,
its skew profile) lives inside that version's directory and is evicted with it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from loader.cache import DERIVED, ModelCache
from store import Store
from tests.registry_helpers import Registry
from tests.servers import start_lockgate


def test_derived_artifacts_live_and_die_with_their_version(registry: Registry) -> None:
    store = Store.open(registry.store_root, create=True)
    frame = pd.DataFrame(np.random.default_rng(0).random((200, 3)), columns=["a", "b", "c"])
    store.commit_files("datasets", "main", [("t.csv", frame.to_csv(index=False).encode())])
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_pandas(frame, source="lockgate://datasets@main/t.csv"), context="training")
        model = LinearRegression().fit(frame, frame.sum(axis=1))
        mlflow.sklearn.log_model(model, name="model", registered_model_name="owned", input_example=frame.head(3))
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
    owned = ["locks", "partial", "pins", "trash", "versions"]
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
