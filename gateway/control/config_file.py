"""The YAML config file of ``lockgate serve --config`` (for containers and Helm)::

endpoints:
  - name: fraud                      # optional; default: the registered model's name
    model_uri: models:/fraud@champion
    follow: true                     # optional; default: on for moving references
    onnx: true                       # optional; ONNX fast path for sklearn models (default on)
    batching: true                   # optional; default: on for sklearn/ONNX paths
    max_batch_rows: 256              # optional
    max_batch_wait_ms: 2.0           # optional
    onnx_spinning: false             # optional; spinning ONNX threads for large-batch endpoints
    precision: exact                 # optional; "float32": a tree regressor's float32 graph may serve
    inference_log_sample: 0.1        # optional; share of scored rows in the inference log (default 0: off)
    inference_log_window: 60         # optional; seconds of rows per inference-log commit
    target_column: label             # optional; the label column the baseline score is taken on
    canary:                          # optional; a share of the traffic goes to another reference
      model_uri: models:/fraud@challenger
      percent: 10                    # 0-100, decimals allowed
    shadow:                          # optional; gets a copy of every primary request
      model_uri: models:/fraud@challenger

Serving options an endpoint leaves out come from the gateway's settings (LOCKGATE_ONNX, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lockgate.gateway.control.endpoint_names import check_endpoint_name, default_name
from lockgate.gateway.control.endpoint_spec import EndpointSpec
from lockgate.gateway.control.traffic_policy import CanarySpec, ShadowSpec
from lockgate.gateway.errors import ConfigError, InvalidEndpointNameError, InvalidPolicyError
from lockgate.gateway.serving.serving_options import OPTION_FIELDS, OptionsPatch, ServingOptions
from lockgate.loader.errors import ModelURIError


def read_config(path: Path, defaults: ServingOptions | None = None) -> list[EndpointSpec]:
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
        unknown = set(entry) - {"name", "model_uri", "follow", "canary", "shadow", *OPTION_FIELDS}
        if unknown:
            raise ConfigError(f"config {str(path)!r}: endpoints[{index}] has unknown keys {sorted(unknown)}")
        given = {key: entry[key] for key in OPTION_FIELDS if key in entry}
        try:
            patch = OptionsPatch.model_validate(given)
        except ValidationError as exc:
            raise ConfigError(f"config {str(path)!r}: {_first_error(index, exc)}") from exc
        options = (defaults or ServingOptions()).with_overrides(patch.model_dump()) if given else None
        follow = entry.get("follow")
        try:
            name = (
                check_endpoint_name(entry["name"])
                if entry.get("name") is not None
                else default_name(entry["model_uri"])
            )
        except (InvalidEndpointNameError, ModelURIError) as exc:
            raise ConfigError(f"config {str(path)!r}: endpoints[{index}]: {exc}") from exc
        canary, shadow = _policy(path, index, entry)
        specs.append(EndpointSpec(name, entry["model_uri"], follow, options, canary, shadow))
    return specs


def _policy(path: Path, index: int, entry: dict[str, Any]) -> tuple[CanarySpec | None, ShadowSpec | None]:
    where = f"config {str(path)!r}: endpoints[{index}]"
    canary = shadow = None
    try:
        if entry.get("canary") is not None:
            given = entry["canary"]
            if not isinstance(given, dict) or set(given) != {"model_uri", "percent"}:
                raise ConfigError(f"{where}.canary needs exactly 'model_uri' and 'percent', not {given!r}")
            if float(given["percent"]) > 0:  # 0 is no canary, as on the command line
                canary = CanarySpec(str(given["model_uri"]), float(given["percent"]))
        if entry.get("shadow") is not None:
            given = entry["shadow"]
            if not isinstance(given, dict) or set(given) != {"model_uri"}:
                raise ConfigError(f"{where}.shadow needs exactly 'model_uri', not {given!r}")
            shadow = ShadowSpec(str(given["model_uri"]))
    except (InvalidPolicyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return canary, shadow


def _first_error(index: int, error: ValidationError) -> str:
    """``endpoints[2].max_batch_rows: Input should be greater than or equal to 1, not 0``."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"endpoints[{index}].{where}: {first['msg']}, not {first.get('input')!r}"
