"""V2 model metadata, built from the MLflow signature: inputs named and typed, and exactly the
outputs infer gives. Shared by the REST routes and the gRPC service. (Which deployment answers a
model name and version is the data plane's ``route``.)"""

from __future__ import annotations

from typing import Any

import numpy as np

from lockgate.gateway.protocols.v2.outputs import PREDICT, PROBABILITIES, output_names, tensor_output_names
from lockgate.gateway.protocols.v2.tensors import datatype_of
from lockgate.gateway.serving.endpoints import Deployment

_MLFLOW_TO_V2 = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
                 "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}  # fmt: skip


def model_metadata(name: str, deployment: Deployment) -> dict[str, Any]:
    schema = deployment.input_schema
    inputs = []
    if schema is not None and schema.is_tensor_spec():
        inputs = [_tensor_metadata(spec, spec.name or f"input-{i}") for i, spec in enumerate(schema.inputs)]
    elif schema is not None and schema.has_input_names():
        for spec in schema.inputs:
            kind = getattr(getattr(spec, "type", None), "name", "string")
            inputs.append({"name": spec.name, "datatype": _MLFLOW_TO_V2.get(str(kind), "BYTES"), "shape": [-1, 1]})
    return {
        "name": name,
        "versions": [deployment.version_label],
        "platform": "mlflow",
        "inputs": inputs,
        "outputs": _outputs_metadata(deployment),
        "parameters": deployment.lineage() | {"serving_path": deployment.serving_path},
    }


def _tensor_metadata(spec: Any, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype_of(np.empty(0, dtype=spec.type)),
        "shape": [int(d) for d in spec.shape],
    }


def _outputs_metadata(deployment: Deployment) -> list[dict[str, Any]]:
    """Exactly the outputs infer offers (``output_names``), by the names infer gives them, so a
    client that requests what the metadata declares gets it. (An unnamed tensor output schema,
    what MLflow infers for an sklearn classifier's labels, was declared as ``output-0``, which
    infer answered with 400 "unknown outputs".)"""
    metadata = deployment.servable.model.mlflow_metadata
    schema = metadata.get_output_schema() if metadata is not None else None
    specs = list(schema.inputs) if schema is not None and schema.is_tensor_spec() else []
    if specs and tensor_output_names(deployment):  # named tensor outputs: one each
        return [_tensor_metadata(spec, str(spec.name)) for spec in specs]
    outputs = []
    for name in output_names(deployment):
        if name == PROBABILITIES:
            outputs.append({"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, -1]})
        elif len(specs) == 1:  # predict, shaped as its tensor spec
            outputs.append(_tensor_metadata(specs[0], PREDICT))
        else:
            outputs.append({"name": PREDICT, "datatype": _output_datatype(deployment), "shape": [-1]})
    return outputs


def _output_datatype(deployment: Deployment) -> str:
    """The V2 datatype of ``predict``, from the signature's outputs (a tensor spec's dtype or a
    column's type); BYTES, the catch-all, when the signature says nothing."""
    metadata = deployment.servable.model.mlflow_metadata
    schema = metadata.get_output_schema() if metadata is not None else None
    spec = schema.inputs[0] if schema is not None and schema.inputs else None
    dtype = getattr(spec, "type", None)
    if isinstance(dtype, np.dtype):  # TensorSpec
        return datatype_of(np.empty(0, dtype=dtype))
    return _MLFLOW_TO_V2.get(str(getattr(dtype, "name", "")), "BYTES")
