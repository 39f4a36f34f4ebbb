"""The YAML config file of ``lockgate serve --config`` (for containers and Helm)::

endpoints:
  - name: fraud                      # optional; default: the registered model's name
    model_uri: models:/fraud@champion
    follow: true                     # optional; default: on for moving references
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.app import EndpointSpec, default_name
from gateway.errors import ConfigError


def read_config(path: Path) -> list[EndpointSpec]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc}") from exc
    entries = (data or {}).get("endpoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"config {str(path)!r} needs a list under 'endpoints'")
    specs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("model_uri"), str):
            raise ConfigError(f"config {str(path)!r}: endpoints[{index}] needs a 'model_uri' string")
        unknown = set(entry) - {"name", "model_uri", "follow"}
        if unknown:
            raise ConfigError(f"config {str(path)!r}: endpoints[{index}] has unknown keys {sorted(unknown)}")
        follow = entry.get("follow")
        specs.append(
            EndpointSpec(str(entry.get("name") or default_name(entry["model_uri"])), entry["model_uri"], follow)
        )
    return specs
