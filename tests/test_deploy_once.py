"""A deploy builds its ``Deployment`` whole, freezes it, and reads what it needs once: the model
URI is parsed once and the ``MLmodel`` file is read and parsed once (MLflow's ``Model`` is made
from that parse, not from a second read)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import mlflow
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import lockgate.loader.flavors
import lockgate.loader.registry
from lockgate.gateway.control.preparer import Preparer
from lockgate.gateway.protocols.v2.outputs import FACTS, OfferedOutputs, learn_outputs
from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.gateway.serving.skew_setup import SkewSettings
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.store_config import open_configured_store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, weights
from tests.test_loader_flavors import make_loader


def _preparer(model_loader: ModelLoader) -> Preparer:
    # As gateway/app.py wires it.
    return Preparer(
        open_configured_store,
        model_loader.cache.derived_dir,
        model_loader.cache.find_derived,
        SkewSettings(60.0, 4),
        16,
        protocol_facts={FACTS: learn_outputs},
    )


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Calls of ``module.name`` made by lockgate, not by MLflow's own ``pyfunc.load_model`` (the
    native load reads the file for itself; that is MLflow's, and lockgate does not repeat it)."""
    calls: list[Any] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        inside_mlflow_load = any(
            frame.function == "load_model" and frame.filename.endswith("mlflow/pyfunc/__init__.py")
            for frame in inspect.stack(context=0)
        )
        if not inside_mlflow_load:
            calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("kind", ["sklearn", "pyfunc"])
def test_a_deploy_parses_the_uri_and_mlmodel_once_and_freezes_the_deployment(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "sklearn":
        X, y = load_iris(return_X_y=True, as_frame=True)
        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(X, y), name="model",
                                     pip_requirements=PIP_REQUIREMENTS, registered_model_name="once",
                                     input_example=X.head(3))  # fmt: skip
    else:
        registry.log_weights_model("once", weights(3, rows=8, cols=3))
    model_loader = make_loader(registry, tmp_path)
    prepare = _preparer(model_loader)
    uri_parses = _counting(monkeypatch, lockgate.loader.registry, "parse_model_uri")
    mlmodel_parses = _counting(monkeypatch, lockgate.loader.flavors, "parse_mlmodel")
    mlflow_reads = _counting(monkeypatch, mlflow.models.Model, "load")

    resolved = model_loader.resolve("models:/once/1")
    deployment = prepare(model_loader.load(resolved, prefer_pyfunc=True, defer_native=True), ServingOptions())

    assert uri_parses == ["models:/once/1"]
    assert len(mlmodel_parses) == 1, mlmodel_parses
    assert mlflow_reads == []  # MLflow's Model comes from the one parse
    assert deployment.input_schema is not None  # the signature came through that parse
    offered = deployment.protocol_facts[FACTS]
    assert isinstance(offered, OfferedOutputs)
    expected = ("predict", "predict_proba") if kind == "sklearn" else ("predict",)
    assert offered.offered == expected
    # Frozen: the facts a request reads cannot change under it; only the live state does.
    with pytest.raises(dataclasses.FrozenInstanceError):
        deployment.input_names = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        deployment.protocol_facts[FACTS] = None  # type: ignore[index]
    deployment.live.inflight += 1
    assert deployment.inflight == 1
    deployment.close()
    assert deployment.closed
