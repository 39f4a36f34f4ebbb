"""Reading an ``MLmodel`` file: flavors, signature, input example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from loader.errors import ModelLoadError


@dataclass(frozen=True)
class ModelMetadata:
    flavors: dict[str, dict[str, Any]]
    signature: dict[str, Any] | None
    input_example_file: str | None

    @property
    def flavor_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.flavors))


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
    )
