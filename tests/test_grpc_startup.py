"""lockgate as a user installs it: from this editable install and from a built wheel, started from
a directory that is not the checkout, with no ``PYTHONPATH`` naming the checkout.

- ``lockgate serve --grpc-port`` starts. (The proto used to be looked up on ``sys.path``, which
  held the checkout only when ``PYTHONPATH`` named it: an editable install's gRPC start-up exited
  with ModuleNotFoundError, and every other test sets ``PYTHONPATH``.)
- One namespace (issue 37): from a directory that holds a ``store.py``, ``loader.py``,
  ``gateway.py`` and ``monitoring/`` of the user's own, MLflow still finds the ``lockgate://``
  artifact repository and dataset source, pandas still reads ``lockgate://`` through fsspec, and
  the CLI runs. Before everything moved under ``lockgate.``, MLflow warned "Failure attempting
  to register ... cannot import name 'Store' from 'store' (./store.py)" and then failed with
  "Could not find a registered artifact repository for: lockgate://".
"""

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
    )
    env.update(extra)
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


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lockgate's wheel, built from a copy of the checkout and installed (no dependencies) into a
    folder of its own; put first on ``PYTHONPATH`` it wins over this venv's editable finder."""
    root = tmp_path_factory.mktemp("wheel")
    wheels, target, source = root / "wheels", root / "site", root / "source"
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
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
    return target


def test_grpc_serves_from_the_editable_install_in_a_scratch_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "elsewhere"
    scratch.mkdir()
    (scratch / "gateway").mkdir()  # a folder of the user's own with the same name must not matter
    serve_and_call_grpc([str(Path(sys.executable).with_name("lockgate"))], scratch, clean_env(scratch))


def test_grpc_serves_from_a_built_wheel(tmp_path: Path, wheel_site: Path) -> None:
    scratch = tmp_path / "elsewhere"
    scratch.mkdir()
    env = clean_env(scratch, PYTHONPATH=str(wheel_site))
    where = subprocess.run([sys.executable, "-c", "import lockgate; print(lockgate.__file__)"], cwd=scratch, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.startswith(str(wheel_site)), where.stdout
    serve_and_call_grpc([sys.executable, "-c", "from lockgate.gateway.cli.main import main; main()"], scratch, env)


# -- one namespace: a user's own store.py, loader.py, gateway.py and monitoring/ ---------------

# Each of the user's modules fails loudly if anything imports it: lockgate must never reach them.
USERS_OWN = {
    "store.py": "raise ImportError('the user\\'s own store.py was imported')\n",
    "loader.py": "raise ImportError('the user\\'s own loader.py was imported')\n",
    "gateway.py": "raise ImportError('the user\\'s own gateway.py was imported')\n",
    "monitoring/__init__.py": "raise ImportError('the user\\'s own monitoring/ was imported')\n",
}

# A training script as a data scientist writes it, saved beside those files and run from there
# (so its folder is first on sys.path).
TRAINING_SCRIPT = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import mlflow
    import pandas as pd
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository("lockgate://models@main/fraud")
    frame = pd.read_csv("lockgate://datasets@main/train.csv")
    dataset = mlflow.data.from_pandas(frame, source="lockgate://datasets@main/train.csv")
import lockgate
print("repository", type(repository).__name__)
print("rows", frame["amount"].tolist())
print("source", type(dataset.source).__name__)
print("lockgate", lockgate.__file__)
print("failures", [str(w.message) for w in caught if "Failure attempting to register" in str(w.message)])
"""


def scratch_with_users_own_modules(tmp_path: Path) -> Path:
    from lockgate.store import Store

    scratch = tmp_path / "project"
    for name, text in USERS_OWN.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    (scratch / "train.py").write_text(TRAINING_SCRIPT)
    Store.open(scratch / "lockgate-store", create=True).commit_files(
        "datasets", "main", [("train.csv", b"amount,label\n3.5,0\n7.25,1\n")]
    )
    return scratch


def run_training_script(scratch: Path, env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "train.py"], cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def run_cli(command: list[str], scratch: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([*command, "store", "ls", "lockgate://datasets@main/"], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def assert_lockgate_served_the_script(printed: dict[str, str], installed_at: Path) -> None:
    assert printed["repository"] == "LockgateArtifactRepository", printed
    assert printed["rows"] == "[3.5, 7.25]", printed
    assert printed["source"] == "LockgateDatasetSource", printed
    assert printed["failures"] == "[]", printed
    assert printed["lockgate"].startswith(str(installed_at)), printed


def test_plugins_and_cli_ignore_the_users_own_modules_from_the_editable_install(tmp_path: Path) -> None:
    scratch = scratch_with_users_own_modules(tmp_path)
    env = clean_env(scratch, LOCKGATE_STORE=str(scratch / "lockgate-store"))
    assert_lockgate_served_the_script(run_training_script(scratch, env), ROOT_DIR)
    assert "train.csv" in run_cli([str(Path(sys.executable).with_name("lockgate"))], scratch, env)


def test_plugins_and_cli_ignore_the_users_own_modules_from_a_built_wheel(tmp_path: Path, wheel_site: Path) -> None:
    scratch = scratch_with_users_own_modules(tmp_path)
    env = clean_env(scratch, LOCKGATE_STORE=str(scratch / "lockgate-store"), PYTHONPATH=str(wheel_site))
    assert_lockgate_served_the_script(run_training_script(scratch, env), wheel_site)
    assert "train.csv" in run_cli([str(wheel_site / "bin" / "lockgate")], scratch, env)
