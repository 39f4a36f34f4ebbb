"""The README as a new user meets it: its Python snippets run as written, twice, in an empty
directory, and what they register deploys and predicts; its store commands run in order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, stop_pid, wait_http

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def clean_env() -> dict[str, str]:
    """A new user's environment: no lockgate or MLflow settings, the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "MLFLOW_"))}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_python_snippets_run_twice_then_deploy_and_predict(tmp_path: Path) -> None:
    snippets = blocks("python")
    assert snippets, "the README has no Python snippet to check"
    for run in (1, 2):
        for index, code in enumerate(snippets):
            script = tmp_path / f"snippet_{index}.py"
            script.write_text(code)
            proc = subprocess.run(
                [sys.executable, str(script)], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, f"run {run}, snippet {index}:\n{proc.stderr[-3000:]}"
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(VENV_BIN / "lockgate"), "serve", "models:/fraud/latest", "--name", "fraud", "--port", str(port)],
        cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", timeout=120, proc=server)
        state = httpx.get(f"{url}/endpoints/fraud").json()
        assert state["status"] == "ready", (tmp_path / "serve.log").read_text()[-3000:]
        assert state["version"] == "2", "two runs of the snippet register two versions"
        assert state["dataset_commit"], "the snippet's log_input gives the model a dataset commit"
        assert state["skew"]["tracked"], state["skew"]
        example = httpx.get(f"{url}/endpoints/fraud/example").content
        answer = httpx.post(
            f"{url}/endpoints/fraud/invocations", content=example, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 200 and len(json.loads(answer.content)["predictions"]) == 5
        assert answer.headers["X-Lockgate-Dataset-Commit"] == state["dataset_commit"]
    finally:
        stop_pid(server)
        log.close()


def test_the_store_commands_run_in_order(tmp_path: Path) -> None:
    block = next(b for b in blocks("bash") if "lockgate store push" in b)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    commands = [line for line in lines if line and not line.startswith("source ")]
    outputs = []
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
        outputs.append(proc.stdout)
    pushes = [out for command, out in zip(commands, outputs, strict=True) if "store push" in command]
    assert all("committed" in out for out in pushes), pushes
    assert "reused" in pushes[1]
