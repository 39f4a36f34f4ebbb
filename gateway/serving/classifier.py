"""Whether a deployment serves a classifier with class probabilities: the sklearn estimator behind
``predict_proba``. A fact of the model, not of a protocol: V2 offers the probabilities as an
output, and the shadow compares a classifier's answers as labels."""

from __future__ import annotations

from typing import Any

from lockgate.gateway.serving.endpoints import Deployment


def probability_model(deployment: Deployment) -> Any | None:
    """The sklearn estimator behind ``predict_proba``, when the model is a classifier that has it."""
    if "sklearn" not in deployment.servable.model.metadata.flavors or deployment.tensor_inputs:
        return None
    try:
        raw = deployment.servable.model.native.get_raw_model()
    except Exception:
        return None
    return raw if callable(getattr(raw, "predict_proba", None)) else None
