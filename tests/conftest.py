"""Shared fixtures: real backends (a directory, memory, and SeaweedFS S3 on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from lockgate.store import Store
from tests.registry_helpers import Registry
from tests.servers import SeaweedFS, env_with, free_port, reset_mlflow_uris, stop_pid, wait_http


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs"))
    saved = {k: os.environ.get(k) for k in server.env()}
    # boto3 reads credentials from the environment, in this process and in the child
    # processes the concurrency and crash tests start.
    os.environ.update({k: v for k, v in server.env().items() if k != "LOCKGATE_S3_ENDPOINT_URL"})
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedFS) -> str:
    seaweed.client().create_bucket(Bucket="lockgate-tests")
    return "lockgate-tests"


@pytest.fixture
def s3_root(s3_bucket: str) -> str:
    """A fresh, empty store prefix for each test."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}"


def _open_root(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if kind == "file":
        return str(tmp_path / "store"), None
    if kind == "memory":
        return "memory://", None
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return request.getfixturevalue("s3_root"), server.endpoint


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    root, endpoint = _open_root(request.param, tmp_path, request)
    opened = Store.open(root, create=True, s3_endpoint_url=endpoint)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def shared_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """A store root that several processes can open (so not memory)."""
    root, endpoint = _open_root(request.param, tmp_path, request)
    Store.open(root, create=True, s3_endpoint_url=endpoint).close()
    return root, endpoint


# -- MLflow registries -------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """An embedded sqlite registry, with the lockgate store the plugin writes to."""
    store_root = tmp_path / "store"
    monkeypatch.setenv("LOCKGATE_STORE", str(store_root))
    monkeypatch.delenv("LOCKGATE_S3_ENDPOINT_URL", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield Registry(uri, store_root, tmp_path)
    reset_mlflow_uris()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` process on 127.0.0.1, stopped by pid at the end."""
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = env_with({"PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"})
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=120, proc=proc)
        yield url
    finally:
        stop_pid(proc)
        log.close()


@pytest.fixture
def server_registry(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    store_root = tmp_path / "store"
    monkeypatch.setenv("LOCKGATE_STORE", str(store_root))
    monkeypatch.delenv("LOCKGATE_S3_ENDPOINT_URL", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    yield Registry(mlflow_server, store_root, tmp_path)
    reset_mlflow_uris()


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def any_registry(request: pytest.FixtureRequest) -> Registry:
    """The same test against the embedded sqlite registry and a live ``mlflow server``."""
    name = "registry" if request.param == "sqlite" else "server_registry"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


# Test files that take minutes (a live `mlflow models serve`, the README run as written, load
# tests). `make test` runs the suite on two xdist workers, a whole file per worker, handing out
# files in collection order: starting the long ones first keeps one worker from finishing alone
# at the end. The order of the tests inside each file does not change.
LONG_FILES = (
    "test_loadtests.py", "test_warm_restart.py", "test_make_serve_flow.py", "test_gateway_exactness.py",
    "test_store_workflow_doc.py", "test_gateway_parity_typed.py", "test_v2_protocol.py", "test_gateway_parity.py",
    "test_readme.py", "test_gateway_operations.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


_SETTINGS_PREFIXES = ("LOCKGATE_", "MLFLOW_")


@pytest.fixture(autouse=True)
def _settings_environment_is_per_test() -> Iterator[None]:
    """Building the loader in process exports LOCKGATE_STORE (MLflow's plugins read the store
    root from the environment). Without this, the next test in the same worker inherits that
    store: the demo honours LOCKGATE_STORE, and once wrote its store into another test's
    directory. Each test ends with the LOCKGATE_* and MLFLOW_* variables it started with."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_SETTINGS_PREFIXES)}
    yield
    for key in [k for k in os.environ if k.startswith(_SETTINGS_PREFIXES) and k not in saved]:
        del os.environ[key]
    os.environ.update(saved)
