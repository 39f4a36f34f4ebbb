"""Custom pyfunc models the tests log. They live apart from the test modules: a gateway process
unpickles them by importing this module, and a test module's own imports (tritonclient.grpc
registers the same ``inference`` proto package as the gateway's gRPC service) must not follow."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np

PROJECTION = np.array([[1.0, 0.5], [-2.0, 0.25], [0.0, 3.0], [1.5, -1.0]])


class Projection(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A tensor-signature model: a float64 [N, 4] tensor in, a float64 [N, 2] tensor out."""

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> Any:
        return np.asarray(model_input) @ PROJECTION


class ParityLabel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A classifier of column ``a``: its label is ``a mod 2``. With ``flip``, it answers the other
    label whenever ``a mod 4 == 3``: on ``a`` spread evenly over 0..3 it disagrees with the plain
    model on exactly 25 % of the rows (what the shadow-disagreement test measures)."""

    def __init__(self, flip: bool = False) -> None:
        self.flip = flip

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        a = np.asarray(model_input["a"], dtype=np.int64)
        labels = a % 2
        if self.flip:
            labels = np.where(a % 4 == 3, 1 - labels, labels)
        return labels


class AlwaysRaises(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Loads, and raises on every prediction (logged without an input example, so the
    warm-up does not call it): a shadow that fails every copy."""

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        raise RuntimeError("this shadow fails on every request")


class FailsToLoad(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A version that resolves and fetches, then cannot load: a failed deploy after resolve."""

    def load_context(self, context: Any) -> None:
        raise RuntimeError("this model never loads")

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return model_input
