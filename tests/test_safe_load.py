"""Safe load (issue 37): with ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false`` (MLflow 3.18's setting) or
lockgate's own ``LOCKGATE_ALLOW_MODEL_CODE_EXECUTION=false``, a version whose flavors would run
the model's own code is refused with one error naming the setting, and before any of its code
runs; skops and ONNX versions are served; a version holding both a pickle and an ONNX graph is
served from the graph, and ``/endpoints/{name}`` says which rule applied and what was passed over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from lockgate.gateway.model_code_policy import load_policy
from lockgate.gateway.settings import Settings
from lockgate.loader.cache import ModelCache
from lockgate.loader.errors import ModelCodeRefusedError
from lockgate.loader.flavors import load_model, read_metadata
from lockgate.loader.load_policy import LoadPolicy, code_run_by_flavor
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry
from tests.servers import start_lockgate

SAFE = LoadPolicy(allow_code=False, set_by="MLFLOW_ALLOW_MODEL_CODE_EXECUTION")
MARKER_VARIABLE = "LOCKGATE_TEST_UNPICKLED_MARKER"


class Tattletale(LogisticRegression):
    """A LogisticRegression that leaves a file behind when it is unpickled: the proof that a
    refused pickle never ran."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(os.environ[MARKER_VARIABLE]).touch()
        super().__setstate__(state)


def _iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    return data.data, data.target.to_numpy()


def _onnx_graph(model: Any, X: pd.DataFrame) -> Any:
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return to_onnx(model, X.to_numpy(dtype=np.float32)[:1], options=options)


def _pickled_and_onnx_dir(directory: Path) -> tuple[Path, LinearRegression]:
    """An MLflow model directory holding a cloudpickled estimator (sklearn and python_function
    flavors) and the same model as an ONNX graph (an ``onnx`` flavor), as some teams log it.
    A regressor: MLflow's ONNX pyfunc flattens each output into a column, and cannot shape a
    classifier graph's label and probability outputs into one frame (it answers 400, as
    ``mlflow models serve`` of such a graph does)."""
    X, y = _iris()
    model = LinearRegression().fit(X, y)
    mlflow.sklearn.save_model(model, directory, serialization_format="cloudpickle", pip_requirements=PIP_REQUIREMENTS)
    (directory / "model.onnx").write_bytes(_onnx_graph(model, X).SerializeToString())
    document = yaml.safe_load((directory / "MLmodel").read_text())
    document["flavors"]["onnx"] = {
        "data": "model.onnx",
        "onnx_version": "1.17.0",
        "providers": ["CPUExecutionProvider"],
    }
    (directory / "MLmodel").write_text(yaml.safe_dump(document))
    return directory, model


def make_loader(registry: Registry, tmp_path: Path, policy: LoadPolicy) -> ModelLoader:
    resolver = Resolver(open_configured_store, tracking_uri=registry.tracking_uri)
    return ModelLoader(resolver, ModelCache(tmp_path / "cache"), open_configured_store, policy=policy)


# -- which flavors run code ----------------------------------------------------------------------


def test_what_runs_code_is_named_per_flavor(tmp_path: Path) -> None:
    X, y = _iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    pickled, skops = tmp_path / "pickled", tmp_path / "skops"
    mlflow.sklearn.save_model(model, pickled, serialization_format="cloudpickle")
    mlflow.sklearn.save_model(model, skops, serialization_format="skops")
    runs = code_run_by_flavor(read_metadata(pickled))
    assert set(runs) == {"sklearn", "python_function"}
    assert "cloudpickle" in runs["sklearn"] and "model.pkl" in runs["sklearn"]
    assert code_run_by_flavor(read_metadata(skops)) == {}

    class Echo(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: Any) -> Any:
            return model_input

    custom = tmp_path / "custom"
    mlflow.pyfunc.save_model(custom, python_model=Echo())
    assert "mlflow.pyfunc.model" in code_run_by_flavor(read_metadata(custom))["python_function"]


def test_a_skops_file_may_trust_sklearn_types_but_not_what_its_author_adds(tmp_path: Path) -> None:
    X, y = _iris()
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    directory = tmp_path / "forest"
    mlflow.sklearn.save_model(
        forest, directory, serialization_format="skops", skops_trusted_types=["sklearn.tree._tree.Tree"]
    )
    assert code_run_by_flavor(read_metadata(directory)) == {}
    document = yaml.safe_load((directory / "MLmodel").read_text())
    document["flavors"]["sklearn"]["skops_trusted_types"] = ["sklearn.tree._tree.Tree", "builtins.eval"]
    (directory / "MLmodel").write_text(yaml.safe_dump(document))
    assert "builtins.eval" in code_run_by_flavor(read_metadata(directory))["sklearn"]
    with pytest.raises(ModelCodeRefusedError, match=r"builtins\.eval"):
        load_model(directory, policy=SAFE)


# -- the loader applies it -------------------------------------------------------------------------


def test_a_pickled_version_is_refused_before_its_pickle_runs(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "unpickled"
    monkeypatch.setenv(MARKER_VARIABLE, str(marker))
    X, y = _iris()
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            Tattletale(max_iter=500).fit(X, y), name="model", pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="tattletale", serialization_format="cloudpickle",
        )  # fmt: skip
    with pytest.raises(ModelCodeRefusedError) as refused:
        make_loader(registry, tmp_path, SAFE).resolve_and_load("models:/tattletale/1")
    message = str(refused.value)
    assert message.startswith("tattletale version 1 not loaded: MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false"), message
    assert "sklearn: its estimator is unpickled (cloudpickle" in message and "skops" in message
    assert not marker.exists(), "the refused pickle ran"
    # The same version with code allowed: the pickle runs (the marker shows the test can fail).
    make_loader(registry, tmp_path / "allowed", LoadPolicy()).resolve_and_load("models:/tattletale/1")
    assert marker.exists()


def test_skops_and_onnx_versions_load_under_safe_load(registry: Registry, tmp_path: Path) -> None:
    X, y = _iris()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    linear = LogisticRegression(max_iter=500).fit(X, y)
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            forest, name="model", pip_requirements=PIP_REQUIREMENTS, registered_model_name="forest-skops",
            serialization_format="skops", skops_trusted_types=["sklearn.tree._tree.Tree"], input_example=X.head(2),
        )  # fmt: skip
    with mlflow.start_run():
        mlflow.onnx.log_model(
            _onnx_graph(linear, X), name="model", pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="iris-onnx", input_example=X.head(2).to_numpy(dtype=np.float32),
        )  # fmt: skip
    loader = make_loader(registry, tmp_path, SAFE)
    skops = loader.resolve_and_load("models:/forest-skops/1")
    assert skops.model.flavor == "sklearn" and skops.model.passed_over == {}
    np.testing.assert_array_equal(skops.model.predict(X), forest.predict(X))
    graph = loader.resolve_and_load("models:/iris-onnx/1")
    assert graph.model.flavor == "onnx"
    np.testing.assert_array_equal(graph.model.predict(X), linear.predict(X))


def test_a_version_with_a_pickle_and_a_graph_serves_the_graph(tmp_path: Path) -> None:
    directory, model = _pickled_and_onnx_dir(tmp_path / "both")
    X, _ = _iris()
    served = load_model(directory, prefer_pyfunc=True, policy=SAFE)  # as the gateway loads
    assert served.flavor == "onnx"
    assert set(served.passed_over) == {"sklearn", "python_function"}
    # The graph's float32 answer, through MLflow's ONNX pyfunc: one column per graph output.
    np.testing.assert_allclose(served.predict(X)["variable"], model.predict(X), rtol=1e-5, atol=1e-6)
    # Code allowed: the native estimator, as always.
    assert load_model(directory, prefer_pyfunc=True).flavor == "python_function"


# -- the gateway decides it from the environment ----------------------------------------------------


def test_lockgates_setting_wins_over_mlflows_and_denial_reaches_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_ALLOW_MODEL_CODE_EXECUTION", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_MODEL_CODE_EXECUTION", raising=False)
    environ: dict[str, str] = {}
    assert load_policy(Settings(), environ) == LoadPolicy(True, "default") and environ == {}
    monkeypatch.setenv("MLFLOW_ALLOW_MODEL_CODE_EXECUTION", "false")
    assert load_policy(Settings(), environ) == LoadPolicy(False, "MLFLOW_ALLOW_MODEL_CODE_EXECUTION")
    assert environ == {"MLFLOW_ALLOW_MODEL_CODE_EXECUTION": "false"}
    monkeypatch.setenv("LOCKGATE_ALLOW_MODEL_CODE_EXECUTION", "true")
    assert load_policy(Settings(), {}) == LoadPolicy(True, "LOCKGATE_ALLOW_MODEL_CODE_EXECUTION")
    monkeypatch.setenv("LOCKGATE_ALLOW_MODEL_CODE_EXECUTION", "false")
    monkeypatch.setenv("MLFLOW_ALLOW_MODEL_CODE_EXECUTION", "true")
    environ = {}
    assert load_policy(Settings(), environ) == LoadPolicy(False, "LOCKGATE_ALLOW_MODEL_CODE_EXECUTION")
    assert environ == {"MLFLOW_ALLOW_MODEL_CODE_EXECUTION": "false"}


@pytest.mark.slow
def test_the_gateway_refuses_the_pickle_serves_the_graph_and_says_so(registry: Registry, tmp_path: Path) -> None:
    X, y = _iris()
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LogisticRegression(max_iter=500).fit(X, y), name="model", pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="pickled", serialization_format="cloudpickle", input_example=X.head(2),
        )  # fmt: skip
    directory, model = _pickled_and_onnx_dir(tmp_path / "both")
    commit = Store.open(str(registry.store_root)).push(directory, "models", "main", "both/1").commit_id
    registry.client.create_registered_model("both")
    registry.client.create_model_version("both", source=f"lockgate://models@{commit}/both/1")

    env = registry.gateway_env(MLFLOW_ALLOW_MODEL_CODE_EXECUTION="false")
    server = start_lockgate(tmp_path, env, "models:/both/1", ready_path="/ready")
    try:
        rows = X.head(5)
        answer = httpx.post(
            f"{server.url}/invocations",
            json={"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        # Served as MLflow serves an ONNX model: one record per row, with the graph's outputs.
        predictions = answer.json()["predictions"]
        got = [row["variable"] for row in predictions]
        np.testing.assert_allclose(got, model.predict(rows), rtol=1e-5, atol=1e-6)
        described = httpx.get(f"{server.url}/endpoints/both", timeout=30).json()
        policy = described["load_policy"]
        assert policy["allow_model_code_execution"] is False
        assert policy["set_by"] == "MLFLOW_ALLOW_MODEL_CODE_EXECUTION"
        assert policy["loaded_flavor"] == "onnx"
        assert set(policy["passed_over"]) == {"sklearn", "python_function"}

        refused = httpx.post(
            f"{server.url}/admin/endpoints", json={"name": "pickled", "model_uri": "models:/pickled/1"}, timeout=120
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()
        assert "MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false" in error["message"], error
        assert "pickled version 1" in error["message"], error
        assert httpx.get(f"{server.url}/endpoints/pickled", timeout=30).status_code == 404
        # The refusal took nothing down: the graph still answers.
        again = httpx.post(
            f"{server.url}/invocations",
            json={"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}},
            timeout=60,
        )
        assert again.status_code == 200, again.text
    finally:
        server.stop()
