"""What `make serve` does, as a new user sees it: the demo builds everything on the embedded
defaults, `lockgate serve` serves it, and the curl it prints returns predictions with the
lineage headers. (The venv creation part of `make serve` is exercised by CI's `make test`.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT_DIR, start_lockgate


@pytest.mark.slow
def test_demo_then_printed_curl_works(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT_DIR)}
    demo = subprocess.run(
        [sys.executable, str(ROOT_DIR / "examples" / "diabetes_demo.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env},
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    again = subprocess.run(
        [sys.executable, str(ROOT_DIR / "examples" / "diabetes_demo.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "reusing them" in again.stdout, "a second run reuses what exists"

    # The printed curl, pointed at the port this test's gateway listens on.
    match = re.search(r"(curl -s -i -X POST \S+/invocations .*?-d '[^']+')", demo.stdout, re.S)
    assert match, demo.stdout
    server = start_lockgate(
        tmp_path,
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / '.lockgate' / 'mlflow.db'}",
            "LOCKGATE_STORE": str(tmp_path / ".lockgate" / "store"),
            "LOCKGATE_CACHE_DIR": str(tmp_path / ".lockgate" / "cache"),
        },
        "models:/diabetes/Production",
        ready_path="/ready",
    )
    try:
        command = re.sub(r"http://127\.0\.0\.1:\d+", server.url, match.group(1).replace("\\\n", " "))
        assert shutil.which("curl"), "curl is needed for this test"
        answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True)
        assert "HTTP/1.1 200" in answer.stdout
        assert '"predictions": [' in answer.stdout
        headers = answer.stdout.lower()
        assert "x-lockgate-model-version: 2" in headers
        assert re.search(r"x-lockgate-weights-commit: [0-9a-f]{64}", headers)
        assert re.search(r"x-lockgate-dataset-commit: [0-9a-f]{64}", headers)
        run_readme_serving_commands(tmp_path, server.url)
    finally:
        server.stop()


def readme_block_with(marker: str) -> list[str]:
    readme = (ROOT_DIR / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if marker in b)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("source ")]


def run_readme_serving_commands(workdir: Path, url: str) -> None:
    """The README's Serving commands, in its order, against the gateway `make serve` runs:
    each must succeed, and the endpoint must end where the README says."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "MLFLOW_"))}
    env.update({"PATH": f"{venv_bin}:{env.get('PATH', '')}", "LOCKGATE_GATEWAY": url})
    for command in [*readme_block_with("lockgate rollback"), *readme_block_with("lockgate import")]:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, f"README command failed: {command}\n{proc.stdout}\n{proc.stderr}"
    import httpx

    state = httpx.get(f"{url}/endpoints/diabetes").json()
    assert (state["model_uri"], state["version"], state["follow"]) == ("models:/diabetes/Production", "2", True)
    actions = [e["action"] for e in httpx.get(f"{url}/endpoints/diabetes/lineage").json()["events"]]
    assert actions[-3:] == ["swap", "rollback", "update"], actions
