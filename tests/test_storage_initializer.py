"""lockgate as KServe's storage initializer: `lockgate materialize URI DIR` writes a version's
verified files and lineage; `lockgate serve DIR` serves them under the same commits with no
registry and no store to reach, and refuses a copy that changed after it was written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from lockgate.loader.cache import ModelCache
from lockgate.loader.errors import ArtifactIntegrityError, ModelLoadError
from lockgate.loader.materialized_copy import LINEAGE_FILE
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from tests.registry_helpers import Registry, weights
from tests.servers import env_with, start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def materialize(registry: Registry, uri: str, destination: Path) -> subprocess.CompletedProcess[str]:
    env = env_with(registry.gateway_env(LOCKGATE_CACHE_DIR=str(registry.workdir / "initializer-cache")))
    return subprocess.run([LOCKGATE, "materialize", uri, str(destination)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


@pytest.mark.slow
def test_a_materialized_copy_serves_with_no_registry_and_no_store(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("copied", weights(3, rows=64, cols=3))
    expected = Resolver(open_configured_store, tracking_uri=registry.tracking_uri).resolve("models:/copied/1")
    copy = tmp_path / "mnt" / "models"
    result = materialize(registry, "models:/copied/1", copy)
    assert result.returncode == 0, result.stderr
    assert f"lockgate serve {copy}" in result.stdout, "it says how to serve the copy"
    assert (copy / LINEAGE_FILE).is_file() and (copy / "MLmodel").is_file()
    # The predictor container: an unreachable registry, no store, an empty cache of its own.
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "LOCKGATE_STORE": str(tmp_path / "no-store"),
           "LOCKGATE_CACHE_DIR": str(tmp_path / "predictor-cache")}  # fmt: skip
    server = start_lockgate(tmp_path, env, str(copy), ready_path="/ready")
    try:
        body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}
        answer = httpx.post(f"{server.url}/endpoints/copied/invocations", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Lockgate-Model-Version"] == "1"
        commit = answer.headers["X-Lockgate-Weights-Commit"]
        assert commit == expected.weights_commit, "served under the commit the registry pinned"
        endpoint = httpx.get(f"{server.url}/endpoints/copied").json()
        assert endpoint["follow"] is False and any("materialized copy" in n for n in endpoint["notes"])
        assert endpoint["weights_commit"] == commit
    finally:
        server.stop()


def test_a_copy_changed_after_materialize_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("tampered", weights(4, rows=64, cols=3))
    copy = tmp_path / "models"
    assert materialize(registry, "models:/tampered/1", copy).returncode == 0
    artifact = next(p for p in copy.rglob("*.npy"))
    artifact.write_bytes(artifact.read_bytes()[:-8] + np.float64(7.0).tobytes())
    loader = ModelLoader(Resolver(open_configured_store, tracking_uri="http://127.0.0.1:9"),
                         ModelCache(tmp_path / "cache"), open_configured_store)  # fmt: skip
    resolved = loader.resolve(str(copy))
    assert resolved.version == "1" and resolved.local_copy == str(copy) and not resolved.moves
    with pytest.raises(ArtifactIntegrityError, match=f"{artifact.name}.*changed after `lockgate materialize`"):
        loader.load(resolved)
    assert not loader.cache.is_complete(resolved.weights.cache_key), "nothing of the copy was adopted"


def test_materialize_replaces_its_own_copy_and_refuses_a_foreign_directory(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("twice", weights(5, rows=64, cols=3))
    registry.log_weights_model("twice", weights(6, rows=64, cols=3))
    copy = tmp_path / "copy"
    assert materialize(registry, "models:/twice/1", copy).returncode == 0
    again = materialize(registry, "models:/twice/2", copy)
    assert again.returncode == 0, again.stderr
    lineage = json.loads((copy / LINEAGE_FILE).read_text())
    assert lineage["resolved"]["version"] == "2"
    on_disk = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert on_disk == set(lineage["files"]) | {LINEAGE_FILE}, "nothing of version 1 is left over"
    foreign = tmp_path / "projects"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = materialize(registry, "models:/twice/2", foreign)
    assert refused.returncode == 1 and "is not empty and is not a copy" in refused.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"], "nothing was written into it"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("commit", "../../outside", "is not a store commit id"),  # the commit names a cache directory
        ("size", "big", "needs a size and a BLAKE3"),
    ],
)
def test_a_crafted_lineage_file_is_one_clear_error(
    registry: Registry, tmp_path: Path, field: str, value: str, needle: str
) -> None:
    registry.log_weights_model("crafted", weights(7, rows=64, cols=3))
    copy = tmp_path / "models"
    assert materialize(registry, "models:/crafted/1", copy).returncode == 0
    lineage = json.loads((copy / LINEAGE_FILE).read_text())
    if field == "commit":
        lineage["resolved"]["weights"]["commit"] = value
    else:
        next(iter(lineage["files"].values()))["size"] = value
    (copy / LINEAGE_FILE).write_text(json.dumps(lineage))
    loader = ModelLoader(Resolver(open_configured_store, tracking_uri="http://127.0.0.1:9"),
                         ModelCache(tmp_path / "cache"), open_configured_store)  # fmt: skip
    with pytest.raises(ModelLoadError, match=needle):
        loader.resolve(str(copy))
    assert not (tmp_path / "outside").exists() and not list((tmp_path / "cache" / "versions").iterdir())
