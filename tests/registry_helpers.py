"""Building real MLflow registries for loader tests: models logged through the lockgate plugin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel

# MLflow infers a model's pip requirements by loading it in a fresh Python process: about 9 s
# of each log_model on this machine (measured: 8.8-9.0 s with the probe, 0.25 s without). The
# tests never install a model's requirements (`mlflow models serve --env-manager local`, and
# the gateway runs in this venv), so they name them instead of probing.
PIP_REQUIREMENTS = ["mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas"]


class WeightsModel(PythonModel):  # type: ignore[misc]
    """A pyfunc whose prediction depends on a large weights file, so versions can share
    most of their bytes (what delta fetch is about)."""

    def load_context(self, context: Any) -> None:
        self.weights = np.load(context.artifacts["weights"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return model_input.to_numpy(dtype=np.float64) @ self.weights[: model_input.shape[1], :1].astype(np.float64)


class BrokenModel(PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        raise RuntimeError("this model always fails")


class AmountModel(PythonModel):  # type: ignore[misc]
    """A model with a categorical input (city) and a numeric one (amount)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return (model_input["amount"] > 100).astype(int).to_numpy()


class SlowModel(PythonModel):  # type: ignore[misc]
    """Sleeps when asked to (column 'sleep'), to test request timeouts."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        import time

        time.sleep(float(model_input["sleep"].max()))
        return model_input["sleep"].to_numpy()


@dataclass
class Registry:
    tracking_uri: str
    store_root: Path
    workdir: Path

    def gateway_env(self, **extra: str) -> dict[str, str]:
        """Environment for a `lockgate serve` process on this registry and store."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "LOCKGATE_STORE": str(self.store_root),
            "LOCKGATE_CACHE_DIR": str(self.workdir / "cache"),
            **extra,
        }

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment(self, name: str = "models", location: str | None = "lockgate://models@main/mlflow") -> str:
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        return str(mlflow.create_experiment(name, artifact_location=location))

    def log_weights_model(
        self, name: str, weights: np.ndarray, experiment: str = "models", dataset: Any = None
    ) -> tuple[str, str]:
        """Log a WeightsModel version; return (version, run id)."""
        path = self.workdir / f"weights-{np.random.default_rng().integers(1 << 30)}.npy"
        np.save(path, weights)
        mlflow.set_experiment(experiment_id=self.experiment(experiment))
        example = pd.DataFrame(np.ones((2, 3)), columns=["a", "b", "c"])
        with mlflow.start_run() as run:
            if dataset is not None:
                mlflow.log_input(dataset, context="training")
            mlflow.set_tag("mlflow.source.git.commit", "0123456789abcdef0123456789abcdef01234567")
            info = mlflow.pyfunc.log_model(
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                python_model=WeightsModel(),
                artifacts={"weights": str(path)},
                registered_model_name=name,
                input_example=example,
            )
        path.unlink()
        return str(info.registered_model_version), run.info.run_id


def weights(seed: int, rows: int = 4096, cols: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def edit_rows(base: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy with ``fraction`` of its rows rewritten as one contiguous block."""
    out = base.copy()
    block = int(len(base) * fraction)
    start = int(np.random.default_rng(seed).integers(0, len(base) - block))
    out[start : start + block] = np.random.default_rng(seed + 1).standard_normal((block, base.shape[1]))
    return out


@contextmanager
def registry_at(workdir: Path, tracking_uri: str | None = None) -> Iterator[Registry]:
    """A sqlite registry (or the one at ``tracking_uri``, an ``mlflow server``) and a store under
    ``workdir``, for module-scoped fixtures: MLflow's URIs and ``LOCKGATE_STORE`` point at them
    while the block logs models, and are restored after."""
    from tests.servers import reset_mlflow_uris

    uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    saved = os.environ.get("LOCKGATE_STORE")
    os.environ["LOCKGATE_STORE"] = str(workdir / "store")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield Registry(uri, workdir / "store", workdir)
    finally:
        reset_mlflow_uris()
        if saved is None:
            os.environ.pop("LOCKGATE_STORE", None)
        else:
            os.environ["LOCKGATE_STORE"] = saved
