"""The lockgate:// artifact repository, driven by real MLflow on a sqlite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestRegressor

from lockgate.loader.artifact_repository import COMMIT_TAG, LockgateArtifactRepository
from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS
from tests.servers import reset_mlflow_uris


@pytest.fixture
def mlflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store_root = tmp_path / "store"
    monkeypatch.setenv("LOCKGATE_STORE", str(store_root))
    monkeypatch.delenv("LOCKGATE_S3_ENDPOINT_URL", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield store_root
    reset_mlflow_uris()


def test_log_model_lands_in_store_and_loads_from_registry(mlflow_env: Path) -> None:
    experiment = mlflow.create_experiment("plugin", artifact_location="lockgate://models@main/mlflow")
    mlflow.set_experiment(experiment_id=experiment)
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 5)), rng.random(200)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="m",
            input_example=X[:3],
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )

    loaded = mlflow.pyfunc.load_model("models:/m/1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    # The files are in the store, in the commit recorded on the LoggedModel.
    client = MlflowClient()
    logged = client.get_logged_model(info.model_id)
    commit = logged.tags[COMMIT_TAG]
    store = Store.open(str(mlflow_env))
    prefix = f"mlflow/models/{info.model_id}/artifacts"
    files = store.list_files(commit, prefix)
    assert f"{prefix}/MLmodel" in files
    assert store.last_commit_touching("models", "main", prefix) == commit

    # The pin survives the branch moving on: the version still loads from its own commit.
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            RandomForestRegressor(n_estimators=3).fit(X, y),
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="m",
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    assert store.resolve("models", "main") != commit
    pinned = mlflow.pyfunc.load_model(logged.tags["lockgate.uri"])
    np.testing.assert_array_equal(pinned.predict(X), model.predict(X))


def test_run_artifacts_list_download_and_delete(mlflow_env: Path, tmp_path: Path) -> None:
    experiment = mlflow.create_experiment("files", artifact_location="lockgate://runs@main/exp")
    mlflow.set_experiment(experiment_id=experiment)
    local = tmp_path / "local"
    (local / "plots").mkdir(parents=True)
    (local / "plots" / "a.txt").write_text("a")
    (local / "b.txt").write_text("bb")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local))
        mlflow.log_artifact(str(local / "b.txt"), artifact_path="single")
    client = MlflowClient()
    listing = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id)}
    assert listing == {("plots", True, None), ("b.txt", False, 2), ("single", True, None)}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == ["plots/a.txt"]
    out = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "dl")))
    assert (out / "plots" / "a.txt").read_text() == "a"
    assert (out / "single" / "b.txt").read_text() == "bb"
    assert client.get_run(run.info.run_id).data.tags[COMMIT_TAG]

    repo = LockgateArtifactRepository(client.get_run(run.info.run_id).info.artifact_uri)
    repo.delete_artifacts("plots")
    assert {f.path for f in repo.list_artifacts()} == {"b.txt", "single"}
    assert repo.list_artifacts("nothing-here") == []


def test_constructor_accepts_mlflow_keywords() -> None:
    repo = LockgateArtifactRepository(
        "lockgate://models@main/x", tracking_uri="sqlite:///t.db", registry_uri="sqlite:///t.db"
    )
    assert repo.tracking_uri == "sqlite:///t.db"
    with pytest.raises(mlflow.exceptions.MlflowException, match="invalid lockgate artifact URI"):
        LockgateArtifactRepository("lockgate://bad repo@main/x")
