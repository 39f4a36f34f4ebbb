"""Which outputs a V2 model offers, and which ones a request gets.

``predict`` is what ``/invocations`` answers. An sklearn classifier also offers
``predict_proba``, its class probabilities. A tensor model with named tensor outputs offers those
names. As MLServer's sklearn runtime does, a request that names no ``outputs`` gets ``predict``
(a tensor model: all its named outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.gateway.protocols.v2.tensors import V2Request, V2RequestError
from lockgate.gateway.serving.classifier import probability_model
from lockgate.gateway.serving.endpoints import Deployment

PREDICT = "predict"
PROBABILITIES = "predict_proba"


def offered_outputs(deployment: Deployment) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the model's V2 outputs, its named tensor outputs). The preparer works them out once, at
    deploy (they need the raw model and the output schema, which never change for a version),
    and the deployment carries them in ``protocol_facts``: no request pays for them."""
    tensors = _tensor_output_names(deployment)
    classifier = not tensors and _offers_probabilities(deployment)
    return tensors or ((PREDICT, PROBABILITIES) if classifier else (PREDICT,)), tensors


def _offers_probabilities(deployment: Deployment) -> bool:
    known = deployment.path.probabilities  # a graph served before the native model loads knows
    if known is not None:
        return known and "sklearn" in deployment.servable.model.metadata.flavors and not tensor_schema(deployment)
    return probability_model(deployment) is not None


@dataclass(frozen=True)
class OfferedOutputs:
    """The V2 outputs a version offers, and its named tensor outputs: worked out once, at deploy."""

    offered: tuple[str, ...] = (PREDICT,)
    tensors: tuple[str, ...] = ()


FACTS = "v2"  # this protocol's key in ``Deployment.protocol_facts``
_DEFAULT = OfferedOutputs()


def learn_outputs(deployment: Deployment) -> OfferedOutputs:
    """The preparer's hook (under ``FACTS``): the outputs this version offers, before it takes traffic."""
    return OfferedOutputs(*offered_outputs(deployment))


def _offered(deployment: Deployment) -> OfferedOutputs:
    facts = deployment.protocol_facts.get(FACTS)
    return facts if isinstance(facts, OfferedOutputs) else _DEFAULT


def output_names(deployment: Deployment) -> tuple[str, ...]:
    """The model's V2 outputs: the tensor names of a named tensor output schema, else
    ``predict`` (plus ``predict_proba`` for a classifier)."""
    return _offered(deployment).offered


def requested_outputs(deployment: Deployment, request: V2Request) -> list[str]:
    if not request.outputs:  # the usual request names none: predict (a tensor model: all its outputs)
        offered = _offered(deployment)
        return list(offered.offered) if offered.tensors else [PREDICT]
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
    return deployment.tensor_inputs


def tensor_output_names(deployment: Deployment) -> tuple[str, ...]:
    return _offered(deployment).tensors


def _tensor_output_names(deployment: Deployment) -> tuple[str, ...]:
    metadata = deployment.servable.model.mlflow_metadata
    schema = metadata.get_output_schema() if metadata is not None else None
    if schema is None or not schema.is_tensor_spec() or not schema.has_input_names():
        return ()
    return tuple(str(n) for n in schema.input_names())
