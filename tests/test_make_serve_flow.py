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
    finally:
        server.stop()
