"""``lockgate serve --grpc-port`` starts as a user starts it: the console script, from a directory
that is not the checkout, with no ``PYTHONPATH``; from this editable install, and from a built
wheel. (The proto used to be looked up on ``sys.path``, which held the checkout only when
``PYTHONPATH`` named it: an editable install's gRPC start-up exited with ModuleNotFoundError,
and every other test sets ``PYTHONPATH``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.servers import ROOT_DIR, Server, free_port, stop_pid, wait_http

pytestmark = pytest.mark.slow


def clean_env(scratch: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_REGISTRY_URI")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        MLFLOW_TRACKING_URI=f"sqlite:///{scratch / 'mlflow.db'}",
        LOCKGATE_STORE=str(scratch / "store"),
        LOCKGATE_CACHE_DIR=str(scratch / "cache"),
        **extra,
    )
    return env


def serve_and_call_grpc(command: list[str], scratch: Path, env: dict[str, str]) -> None:
    port, grpc_port = free_port(), free_port()
    log_path = scratch / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)],
            cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http(server.url + "/ping", timeout=120, proc=proc)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
            # ServerLiveResponse{live: true} is field 1, varint 1.
            assert live(b"", timeout=30) == b"\x08\x01", server.log()
    finally:
        stop_pid(proc)
    assert "ModuleNotFoundError" not in server.log()


def test_grpc_serves_from_the_editable_install_in_a_scratch_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "elsewhere"
    scratch.mkdir()
    (scratch / "gateway").mkdir()  # a folder of the user's own with the same name must not matter
    serve_and_call_grpc([str(Path(sys.executable).with_name("lockgate"))], scratch, clean_env(scratch))


def test_grpc_serves_from_a_built_wheel(tmp_path: Path) -> None:
    wheels, target, scratch = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    scratch.mkdir()
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT_DIR,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".lockgate", "build", "__pycache__", ".*_cache", "*.egg-info", "reports", "results"
        ),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True, timeout=600)
    (wheel,) = wheels.glob("lockgate-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=600)
    # The wheel's packages first on the path (this venv's editable finder comes after the path).
    env = clean_env(scratch, PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=scratch, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.startswith(str(target)), where.stdout
    serve_and_call_grpc([sys.executable, "-c", "from gateway.cli.main import main; main()"], scratch, env)
