"""Which outputs a V2 model offers, and which ones a request gets.

``predict`` is what ``/invocations`` answers. An sklearn classifier also offers
``predict_proba``, its class probabilities. A tensor model with named tensor outputs offers those
names. As MLServer's sklearn runtime does, a request that names no ``outputs`` gets ``predict``
(a tensor model: all its named outputs).
"""

from __future__ import annotations

import weakref
from typing import Any

from gateway.endpoints import Deployment
from gateway.v2_tensors import V2Request, V2RequestError

PREDICT = "predict"
PROBABILITIES = "predict_proba"


def probability_model(deployment: Deployment) -> Any | None:
    """The sklearn estimator behind ``predict_proba``, when the model is a classifier that has it."""
    if "sklearn" not in deployment.servable.resolved.flavors or tensor_schema(deployment):
        return None
    try:
        raw = deployment.servable.model.native.get_raw_model()
    except Exception:
        return None
    return raw if callable(getattr(raw, "predict_proba", None)) else None


# A deployment's outputs never change (its model and signature are fixed), and working them out
# (the raw model, the output schema) cost ~40 us of every V2 request: once per deployment.
_OUTPUTS: weakref.WeakKeyDictionary[Deployment, tuple[tuple[str, ...], tuple[str, ...]]] = weakref.WeakKeyDictionary()


def _outputs(deployment: Deployment) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the model's V2 outputs, its named tensor outputs), worked out once per deployment."""
    known = _OUTPUTS.get(deployment)
    if known is None:
        tensors = _tensor_output_names(deployment)
        classifier = not tensors and probability_model(deployment) is not None
        names = tensors or ((PREDICT, PROBABILITIES) if classifier else (PREDICT,))
        known = _OUTPUTS[deployment] = (names, tensors)
    return known


def output_names(deployment: Deployment) -> tuple[str, ...]:
    """The model's V2 outputs: the tensor names of a named tensor output schema, else
    ``predict`` (plus ``predict_proba`` for a classifier)."""
    return _outputs(deployment)[0]


def requested_outputs(deployment: Deployment, request: V2Request) -> list[str]:
    available = output_names(deployment)
    wanted = [str(o.get("name")) for o in request.outputs]
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        listed = ", ".join(repr(n) for n in available)
        raise V2RequestError(f"unknown outputs {unknown}: this model's outputs are {listed}")
    if wanted:
        return list(dict.fromkeys(wanted))
    return list(available if tensor_output_names(deployment) else (PREDICT,))


def tensor_schema(deployment: Deployment) -> bool:
    schema = deployment.input_schema
    return bool(schema is not None and schema.is_tensor_spec())


def tensor_output_names(deployment: Deployment) -> tuple[str, ...]:
    return _outputs(deployment)[1]


def _tensor_output_names(deployment: Deployment) -> tuple[str, ...]:
    metadata = getattr(deployment.servable.model.native, "metadata", None)
    schema = metadata.get_output_schema() if metadata is not None else None
    if schema is None or not schema.is_tensor_spec() or not schema.has_input_names():
        return ()
    return tuple(str(n) for n in schema.input_names())
