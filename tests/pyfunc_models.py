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
