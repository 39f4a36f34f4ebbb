"""Each flavor loads and predicts what the in-memory model predicts; bad cases are named."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from lockgate.loader.cache import ModelCache
from lockgate.loader.errors import ModelLoadError, NoArtifactsError, RegistryUnavailableError, UnsupportedFlavorError
from lockgate.loader.importer import import_model
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store, parse_uri
from tests.registry_helpers import PIP_REQUIREMENTS, BrokenModel, Registry, weights
from tests.servers import free_port


def make_loader(registry: Registry, tmp_path: Path) -> ModelLoader:
    return ModelLoader(
        Resolver(open_configured_store, tracking_uri=registry.tracking_uri),
        ModelCache(tmp_path / "cache"),
        open_configured_store,
    )


def _iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    return data.data, data.target.to_numpy()


@pytest.mark.parametrize("serialization", ["skops", "cloudpickle"])
def test_sklearn_both_serializations(registry: Registry, tmp_path: Path, serialization: str) -> None:
    X, y = _iris()
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        kwargs = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]} if serialization == "skops" else {}
        mlflow.sklearn.log_model(
            model, name="model", pip_requirements=PIP_REQUIREMENTS, registered_model_name="rf", input_example=X.head(3),
            serialization_format=serialization, **kwargs,
        )  # fmt: skip
    servable = make_loader(registry, tmp_path).resolve_and_load("models:/rf/1")
    assert servable.model.flavor == "sklearn"
    assert "sklearn" in servable.resolved.flavors and servable.resolved.signature is not None
    np.testing.assert_array_equal(servable.model.predict(X), model.predict(X))


def test_onnx_flavor(registry: Registry, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    X, y = _iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(model, X.to_numpy(dtype=np.float32)[:1], options={id(model): {"zipmap": False}})
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.onnx.log_model(
            onx,
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="iris-onnx",
            input_example=X.head(2).to_numpy(dtype=np.float32),
        )
    servable = make_loader(registry, tmp_path).resolve_and_load("models:/iris-onnx/1")
    assert servable.model.flavor == "onnx"
    np.testing.assert_array_equal(servable.model.predict(X), model.predict(X))


def test_custom_pyfunc(registry: Registry, tmp_path: Path) -> None:
    w = weights(7, rows=16, cols=4)
    registry.log_weights_model("custom", w)
    servable = make_loader(registry, tmp_path).resolve_and_load("models:/custom/1")
    assert servable.model.flavor == "python_function"
    frame = pd.DataFrame(np.ones((2, 3)), columns=["a", "b", "c"])
    np.testing.assert_allclose(
        np.asarray(servable.model.predict(frame)).ravel(), (np.ones((2, 3)) @ w[:3, :1].astype(np.float64)).ravel()
    )


def test_model_that_fails_its_own_example_is_refused(registry: Registry, tmp_path: Path) -> None:
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", pip_requirements=PIP_REQUIREMENTS, python_model=BrokenModel(), registered_model_name="broken",
            input_example=pd.DataFrame({"a": [1.0]}),
        )  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"fails to predict on its own input example.*always fails"):
        make_loader(registry, tmp_path).resolve_and_load("models:/broken/1")


def test_unsupported_flavor_names_the_flavors(registry: Registry, tmp_path: Path) -> None:
    model_dir = tmp_path / "keras-model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors:\n  keras:\n    keras_version: 3.0\n  tensorflow: {}\n")
    store = Store.open(str(registry.store_root), create=True)
    commit = store.push(model_dir, "models", "main", "foreign/keras").commit_id
    registry.client.create_registered_model("foreign")
    registry.client.create_model_version("foreign", source=f"lockgate://models@{commit}/foreign/keras")
    with pytest.raises(UnsupportedFlavorError, match="keras, tensorflow"):
        make_loader(registry, tmp_path).resolve_and_load("models:/foreign/1")


def test_version_with_no_artifacts(registry: Registry, tmp_path: Path) -> None:
    Store.open(str(registry.store_root), create=True).commit_files("models", "main", [("x", b"x")])
    registry.client.create_registered_model("hollow")
    registry.client.create_model_version("hollow", source="lockgate://models@main/nothing/here")
    with pytest.raises(NoArtifactsError, match="nothing/here"):
        make_loader(registry, tmp_path).resolve_and_load("models:/hollow/1")


def test_registry_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    resolver = Resolver(open_configured_store, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        resolver.resolve("models:/anything/1")


def test_model_outside_the_store_is_served_then_imported(registry: Registry, tmp_path: Path) -> None:
    X, y = _iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    plain = registry.experiment("plain", location=(tmp_path / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment_id=plain)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="outside",
            input_example=X.head(2),
        )
    loader = make_loader(registry, tmp_path)
    before = loader.resolve_and_load("models:/outside/1")
    assert not before.resolved.weights.in_store
    np.testing.assert_array_equal(before.model.predict(X), model.predict(X))

    result = import_model(
        loader.resolver,
        open_configured_store(create=True),
        "models:/outside/1",
        parse_uri("lockgate://models@main/imported/outside-1"),
    )
    assert not result.already_in_store and result.push is not None
    after = loader.resolve("models:/outside/1")
    assert after.weights.in_store and after.weights.uri == result.pinned_uri
    served = loader.load(after)
    np.testing.assert_array_equal(served.model.predict(X), model.predict(X))
    again = import_model(
        loader.resolver, open_configured_store(), "models:/outside/1", parse_uri("lockgate://models@main/x")
    )
    assert again.already_in_store
