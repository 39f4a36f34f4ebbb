"""One serving-options model: every place an operator sets a serving option (settings, the CLI,
the deploy API, the config file, the Helm chart, the docs) has exactly the options
``ServingOptions`` defines, with its defaults. A new option that misses one of them fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lockgate.gateway.cli.main import app as cli_app
from lockgate.gateway.control.config_file import read_config
from lockgate.gateway.errors import ConfigError
from lockgate.gateway.routes.admin_routes import DeployRequest
from lockgate.gateway.serving.serving_options import OPTION_DEFAULTS, OPTION_FIELDS, ServingOptions
from lockgate.gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_settings_carry_every_option_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPTION_FIELDS:
        assert Settings.model_fields[name].default == OPTION_DEFAULTS[name], name
    assert Settings().serving_options() == ServingOptions()
    monkeypatch.setenv("LOCKGATE_ONNX_SPINNING", "true")
    monkeypatch.setenv("LOCKGATE_MAX_BATCH_ROWS", "32")
    assert Settings().serving_options() == ServingOptions(onnx_spinning=True, max_batch_rows=32)


@pytest.mark.parametrize("command", ["serve", "deploy"])
def test_cli_has_a_flag_for_every_option(command: str) -> None:
    result = CliRunner().invoke(cli_app, [command, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    for name in OPTION_FIELDS:
        assert f"--{name.replace('_', '-')}" in result.output, name
        assert f"LOCKGATE_{name.upper()}" in result.output, name


def test_deploy_api_takes_every_option_and_nothing_else() -> None:
    properties = DeployRequest.model_json_schema()["properties"]
    assert set(properties) == {"name", "model_uri", "follow", "canary", "shadow", *OPTION_FIELDS}
    body = DeployRequest.model_validate({"model_uri": "models:/a/1", "max_batch_rows": 8, "precision": "exact"})
    options = ServingOptions().with_overrides(body.model_dump())
    assert options == ServingOptions(max_batch_rows=8, precision="exact")
    for bad in ({"max_batch_rows": 0}, {"onnx": "yes"}, {"precision": "fast"}, {"max_batch_wait_ms": 5000}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DeployRequest.model_validate({"model_uri": "models:/a/1", **bad})


def test_config_file_takes_every_option_and_names_a_bad_one(tmp_path: Path) -> None:
    every = {"onnx": False, "batching": True, "max_batch_rows": 9, "max_batch_wait_ms": 1.5,
             "onnx_spinning": True, "precision": "exact", "inference_log_sample": 0.25,
             "inference_log_window": 30.0, "target_column": "label"}  # fmt: skip
    assert set(every) == set(OPTION_FIELDS)
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [{"model_uri": "models:/a/1", **every}]}))
    (spec,) = read_config(path)
    assert spec.options == ServingOptions(**every)  # type: ignore[arg-type]
    path.write_text(yaml.safe_dump({"endpoints": [{"model_uri": "models:/a/1"}, {"model_uri": "m", "precision": "x"}]}))
    with pytest.raises(ConfigError, match=r"endpoints\[1\]\.precision: .*'exact', 'float32' or 'auto'.*not 'x'"):
        read_config(path)


def test_helm_values_and_docs_name_every_option() -> None:
    values = yaml.safe_load((ROOT / "helm/lockgate/values.yaml").read_text())["serving"]
    schema = json.loads((ROOT / "helm/lockgate/values.schema.json").read_text())
    serving_schema = schema["properties"]["serving"]["properties"]
    deployment = (ROOT / "helm/lockgate/templates/deployment.yaml").read_text()
    docs = (ROOT / "docs/gateway.md").read_text()
    for name in OPTION_FIELDS:
        assert camel(name) in values and camel(name) in serving_schema, name
        assert re.search(rf"name: LOCKGATE_{name.upper()}\b", deployment), name
        assert f"`LOCKGATE_{name.upper()}`" in docs and f"`{name}`" in docs, name
