"""Reading an ``MLmodel`` file: flavors, signature, input example."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from lockgate.loader.errors import ModelLoadError


@dataclass(frozen=True)
class ModelMetadata:
    flavors: dict[str, dict[str, Any]]
    signature: dict[str, Any] | None
    input_example_file: str | None
    # The whole parsed file: MLflow's own ``Model`` is built from it (``mlflow_model``), so a
    # deploy reads and parses ``MLmodel`` once, not once per reader.
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def flavor_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.flavors))

    def mlflow_model(self) -> Any:
        """MLflow's ``Model`` for this file, as ``Model.load`` makes it (that is ``from_dict``
        of the parsed YAML), without reading the file again. A copy: MLflow's object may change it."""
        from mlflow.models import Model

        return Model.from_dict(copy.deepcopy(self.document))


def parse_mlmodel(text: str | bytes, where: str) -> ModelMetadata:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"MLmodel at {where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ModelLoadError(f"MLmodel at {where} has no 'flavors' section")
    example = data.get("saved_input_example_info") or {}
    return ModelMetadata(
        flavors=data["flavors"],
        signature=data.get("signature"),
        input_example_file=example.get("artifact_path") if isinstance(example, dict) else None,
        document=data,
    )
