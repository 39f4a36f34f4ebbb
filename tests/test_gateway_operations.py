"""Operational edges: the registry going down under follow mode, request timeouts, and the
YAML config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from lockgate.gateway.control.config_file import read_config
from lockgate.gateway.errors import ConfigError
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, SlowModel, weights
from tests.servers import env_with, free_port, reset_mlflow_uris, start_lockgate, stop_pid, wait_http

PAYLOAD = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 1.0, 1.0]]}}).encode()
HEADERS = {"Content-Type": "application/json"}


@pytest.mark.slow
def test_registry_down_during_follow_keeps_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    server_proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'reg.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env=env_with({"PATH": f"{venv_bin}:{os.environ['PATH']}"}),
    )  # fmt: skip
    tracking = f"http://127.0.0.1:{port}"
    gateway = None
    try:
        wait_http(f"{tracking}/health", timeout=120, proc=server_proc)
        monkeypatch.setenv("LOCKGATE_STORE", str(tmp_path / "store"))
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)  # never inherit another test's registry
        registry = Registry(tracking, tmp_path / "store", tmp_path)
        registry.log_weights_model("remote", weights(1, rows=64, cols=4))
        registry.client.set_registered_model_alias("remote", "live", "1")
        env = {
            "MLFLOW_TRACKING_URI": tracking,
            "LOCKGATE_STORE": str(tmp_path / "store"),
            "LOCKGATE_CACHE_DIR": str(tmp_path / "cache"),
            "LOCKGATE_FOLLOW_INTERVAL": "1",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        gateway = start_lockgate(tmp_path, env, "models:/remote@live", ready_path="/ready")
        stop_pid(server_proc)  # the registry goes down
        deadline = time.monotonic() + 60
        while "unreachable" not in (httpx.get(f"{gateway.url}/endpoints/remote").json()["last_error"] or ""):
            assert time.monotonic() < deadline, "the registry outage never showed on the endpoint"
            time.sleep(0.3)
        state = httpx.get(f"{gateway.url}/endpoints/remote").json()
        assert "unreachable" in state["last_error"] and state["status"] == "ready"
        answer = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=HEADERS)
        assert answer.status_code == 200 and answer.headers["X-Lockgate-Model-Version"] == "1"
    finally:
        reset_mlflow_uris()
        if gateway is not None:
            gateway.stop()
        stop_pid(server_proc)


def test_request_timeout_is_504(registry: Registry) -> None:
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", pip_requirements=PIP_REQUIREMENTS, python_model=SlowModel(), registered_model_name="slow",
            input_example=pd.DataFrame({"sleep": [0.0]}),
        )  # fmt: skip
    env = registry.gateway_env(LOCKGATE_REQUEST_TIMEOUT="1")
    server = start_lockgate(registry.workdir, env, "models:/slow/1", ready_path="/ready")
    try:
        fast = httpx.post(
            f"{server.url}/invocations", json={"dataframe_split": {"columns": ["sleep"], "data": [[0.0]]}}
        )
        assert fast.status_code == 200
        slow = httpx.post(
            f"{server.url}/invocations", json={"dataframe_split": {"columns": ["sleep"], "data": [[3.0]]}}, timeout=30
        )
        assert slow.status_code == 504 and "exceeded" in slow.text
    finally:
        server.stop()


def test_config_file(tmp_path: Path) -> None:
    good = tmp_path / "endpoints.yaml"
    good.write_text(
        "endpoints:\n  - model_uri: models:/fraud@champion\n"
        "  - name: legacy\n    model_uri: models:/fraud/3\n    follow: false\n"
    )
    specs = read_config(good)
    assert [(s.name, s.model_uri, s.follow) for s in specs] == [
        ("fraud", "models:/fraud@champion", None),
        ("legacy", "models:/fraud/3", False),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - name: x\n    modeluri: models:/x/1\n")
    with pytest.raises(ConfigError, match=r"endpoints\[0\] needs a 'model_uri'"):
        read_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("endpoints:\n  - model_uri: models:/x/1\n    folow: true\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        read_config(typo)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.yaml")


def test_config_file_serving_options(tmp_path: Path) -> None:
    from lockgate.gateway.serving.serving_options import ServingOptions

    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n  - model_uri: models:/a/1\n"
        "  - model_uri: models:/b/1\n    onnx: false\n    max_batch_rows: 64\n    onnx_spinning: true\n"
    )
    defaults = ServingOptions(max_batch_wait_ms=5.0)
    first, second = read_config(path, defaults)
    assert first.options is None  # the gateway's defaults apply
    assert second.options == ServingOptions(onnx=False, max_batch_rows=64, max_batch_wait_ms=5.0, onnx_spinning=True)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("endpoints:\n  - model_uri: models:/a/1\n    max_batch_rows: true\n")
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.max_batch_rows: Input should be a valid integer.*not True"):
        read_config(wrong)
