"""docs/store.md, "The experiment workflow", run as written: in an empty directory, against a
real SeaweedFS to copy from and a real `lockgate serve` to deploy to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT_DIR, SeaweedFS, free_port, stop_pid, wait_http

VENV_BIN = Path(sys.executable).parent


def workflow_blocks() -> list[tuple[str, str]]:
    text = (ROOT_DIR / "docs" / "store.md").read_text()
    section = text.split("## The experiment workflow", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|bash)\n(.*?)```", section, re.S)


@pytest.mark.s3
@pytest.mark.slow
def test_the_experiment_workflow_runs_as_written(seaweed: SeaweedFS, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "MLFLOW_"))}
    env.update(seaweed.env())
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    port = free_port()
    env["LOCKGATE_GATEWAY"] = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - closed below
    gateway = subprocess.Popen(
        [str(VENV_BIN / "lockgate"), "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=120, proc=gateway)
        blocks = workflow_blocks()
        assert [kind for kind, _ in blocks] == ["python", "bash", "python", "python", "bash"]
        for index, (kind, code) in enumerate(blocks):
            if kind == "python":
                script = tmp_path / f"step_{index}.py"
                script.write_text(code)
                commands = [[sys.executable, str(script)]]
            else:
                lines = [line.split("  #")[0].strip() for line in code.splitlines()]
                commands = [["bash", "-c", line] for line in lines if line]
            for command in commands:
                proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                                      check=False)  # fmt: skip
                assert proc.returncode == 0, f"step {index}: {command[-1]}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        state = httpx.get(f"http://127.0.0.1:{port}/endpoints/iris").json()
        assert state["status"] == "ready" and state["dataset_commit"], state
        assert state["model_uri"] == "models:/iris@champion"
        example = httpx.get(f"http://127.0.0.1:{port}/endpoints/iris/example").content
        answer = httpx.post(f"http://127.0.0.1:{port}/endpoints/iris/invocations", content=example,
                            headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 200 and answer.headers["X-Lockgate-Dataset-Commit"] == state["dataset_commit"]
    finally:
        stop_pid(gateway)
        log.close()
