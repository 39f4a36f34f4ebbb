"""The gateway under change: hot swap under load, follow mode, rollback, lineage, and bad
input. A real ``lockgate serve`` (uvicorn) against a real sqlite registry and store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.registry_helpers import PIP_REQUIREMENTS, BrokenModel, Registry, weights
from tests.servers import Server, start_lockgate

PAYLOAD = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 1.0, 1.0]]}}).encode()
HEADERS = {"Content-Type": "application/json"}
LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


@pytest.fixture
def three_versions(registry: Registry) -> Registry:
    for seed in (1, 2, 3):
        registry.log_weights_model("swap", weights(seed, rows=64, cols=4))
    return registry


@pytest.fixture
def gateway(three_versions: Registry) -> Iterator[Server]:
    server = start_lockgate(three_versions.workdir, three_versions.gateway_env(), "models:/swap/1", ready_path="/ready")
    yield server
    server.stop()


def deploy(server: Server, uri: str, name: str = "swap", **extra: object) -> httpx.Response:
    return httpx.post(f"{server.url}/admin/endpoints", json={"name": name, "model_uri": uri, **extra}, timeout=120)


@dataclass
class Observation:
    started: float
    ended: float
    status: int
    version: str | None


@pytest.mark.slow
def test_swap_under_load_fails_nothing(gateway: Server) -> None:
    stop = threading.Event()
    observations: list[Observation] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post(f"{gateway.url}/endpoints/swap/invocations", content=PAYLOAD, headers=HEADERS)
                    status, version = response.status_code, response.headers.get("X-Lockgate-Model-Version")
                except httpx.HTTPError:
                    status, version = -1, None
                with lock:
                    observations.append(Observation(started, time.monotonic(), status, version))

    # Each interval: (version, live from, live until); a swap overlaps old and new. Version 1 is
    # live from before the first client starts: on a loaded machine a request can complete
    # before this thread runs again (seen once: a v1 answer 27 ms before `since` was taken).
    live: list[tuple[str, float, float]] = []
    since, current, settled_at = time.monotonic(), "1", 0.0
    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        for target in ("2", "3", "2"):
            begun = time.monotonic()
            assert deploy(gateway, f"models:/swap/{target}").status_code == 200
            done = time.monotonic()
            live.append((current, since, done))
            since, current, settled_at = begun, target, done
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    live.append((current, since, time.monotonic() + 60))

    assert len(observations) > 200, "the load must really overlap the swaps"
    failures = [o for o in observations if o.status != 200]
    assert not failures, f"{len(failures)} of {len(observations)} requests failed: {failures[:3]}"
    for o in observations:
        allowed = {v for v, start, end in live if start <= o.ended and o.started <= end}
        assert o.version in allowed, f"version {o.version} answered in [{o.started}, {o.ended}]; live were {allowed}"
    settled = [o for o in observations if o.started > settled_at]
    assert settled and {o.version for o in settled} == {"2"}, "after the last swap only v2 answers"
    print(f"\nswap under load: {len(observations)} requests, 0 failed, 3 swaps")


def test_rollback_restores_previous_with_zero_bytes(gateway: Server) -> None:
    assert deploy(gateway, "models:/swap/2").status_code == 200
    response = httpx.post(f"{gateway.url}/admin/endpoints/swap/rollback", json={}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "1"
    assert body["load_report"]["bytes_fetched"] == 0
    answer = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=HEADERS)
    assert answer.headers["X-Lockgate-Model-Version"] == "1"
    assert body["follow"] is False


def test_lineage_before_and_after_a_swap(gateway: Server, three_versions: Registry) -> None:
    first = httpx.get(f"{gateway.url}/endpoints/swap").json()
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    assert deploy(gateway, "models:/swap/3").status_code == 200
    after = httpx.get(f"{gateway.url}/endpoints/swap").json()

    def lineage(at: float) -> dict[str, object]:
        proc = subprocess.run(
            [LOCKGATE, "lineage", "swap", "--at", f"{at}", "--gateway", gateway.url, "--json"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["serving"]["to"]  # type: ignore[no-any-return]

    assert lineage(between)["weights_commit"] == first["weights_commit"]
    assert lineage(time.time())["weights_commit"] == after["weights_commit"]
    assert lineage(time.time())["version"] == "3"


def test_bad_input_is_named(gateway: Server) -> None:
    unknown = httpx.post(f"{gateway.url}/endpoints/nope/invocations", content=PAYLOAD, headers=HEADERS)
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST" and "swap" in unknown.json()["message"]
    huge = httpx.post(f"{gateway.url}/invocations", content=b"x" * (17 * 1024 * 1024), headers=HEADERS)
    assert huge.status_code == 413 and "limit" in huge.json()["message"]
    bad = deploy(gateway, "models:/does-not-exist/1", name="ghost")
    assert bad.status_code == 404 and "does-not-exist" in bad.json()["message"]
    malformed = deploy(gateway, "models:/swap/champion", name="ghost")
    assert malformed.status_code == 400 and "models:/swap@champion" in malformed.json()["message"]
    # The failed deploys changed nothing that serves.
    still = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=HEADERS)
    assert still.status_code == 200 and still.headers["X-Lockgate-Model-Version"] == "1"


def test_admin_token(three_versions: Registry) -> None:
    env = three_versions.gateway_env(LOCKGATE_ADMIN_TOKEN="s3cret")
    server = start_lockgate(three_versions.workdir, env, "models:/swap/1", ready_path="/ready")
    try:
        body = {"name": "swap", "model_uri": "models:/swap/2"}
        missing = httpx.post(f"{server.url}/admin/endpoints", json=body)
        assert missing.status_code == 401 and "Bearer" in missing.json()["message"]
        wrong = httpx.post(f"{server.url}/admin/endpoints", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        right = httpx.post(
            f"{server.url}/admin/endpoints", json=body, headers={"Authorization": "Bearer s3cret"}, timeout=120
        )
        assert right.status_code == 200 and right.json()["version"] == "2"
    finally:
        server.stop()


@pytest.mark.slow
def test_follow_moves_with_the_alias_and_survives_a_broken_version(registry: Registry) -> None:
    for seed in (1, 2):
        registry.log_weights_model("follow", weights(seed, rows=64, cols=4))
    client = registry.client
    client.set_registered_model_alias("follow", "champion", "1")
    env = registry.gateway_env(LOCKGATE_FOLLOW_INTERVAL="1")
    server = start_lockgate(registry.workdir, env, "models:/follow@champion", ready_path="/ready")
    try:

        def version() -> str:
            r = httpx.post(f"{server.url}/invocations", content=PAYLOAD, headers=HEADERS)
            assert r.status_code == 200, r.text
            return r.headers["X-Lockgate-Model-Version"]

        assert version() == "1"
        moved = time.monotonic()
        client.set_registered_model_alias("follow", "champion", "2")
        while version() != "2":
            assert time.monotonic() - moved < 60, "follow mode never picked up the alias move"
            time.sleep(0.2)
        print(f"\nfollow: alias move served after {time.monotonic() - moved:.1f}s (interval 1s)")

        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                python_model=BrokenModel(),
                registered_model_name="follow",
                input_example=pd.DataFrame(np.ones((1, 3)), columns=["a", "b", "c"]),
            )
        client.set_registered_model_alias("follow", "champion", "3")
        deadline = time.monotonic() + 60
        while True:
            state = httpx.get(f"{server.url}/endpoints/follow").json()
            if state["last_error"]:
                break
            assert time.monotonic() < deadline, "the broken version's failure never showed"
            time.sleep(0.2)
        assert "always fails" in state["last_error"]
        assert state["version"] == "2" and version() == "2", "v2 keeps serving"
    finally:
        server.stop()


def test_ready_is_503_until_a_model_loads(registry: Registry) -> None:
    env = registry.gateway_env()
    server = start_lockgate(registry.workdir, env, "models:/missing@champion", ready_path="/ping")
    try:
        ready = httpx.get(f"{server.url}/ready")
        assert ready.status_code == 503 and ready.json()["waiting_for"] == ["missing"]
        state = httpx.get(f"{server.url}/endpoints/missing").json()
        assert state["status"] == "failed" and "no registered model 'missing'" in state["last_error"]
        answer = httpx.post(f"{server.url}/invocations", content=PAYLOAD, headers=HEADERS)
        assert answer.status_code == 503
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_stray_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_ADMIN_TOKEN", raising=False)
    os.environ.pop("LOCKGATE_FOLLOW_INTERVAL", None)


def test_endpoint_missing_at_startup_loads_once_it_exists(registry: Registry) -> None:
    env = registry.gateway_env(LOCKGATE_FOLLOW_INTERVAL="1")
    server = start_lockgate(registry.workdir, env, "models:/late/1", ready_path="/ping")
    try:
        assert httpx.get(f"{server.url}/ready").status_code == 503
        registry.log_weights_model("late", weights(9, rows=64, cols=4))
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the configured endpoint was never retried"
            time.sleep(0.3)
        answer = httpx.post(f"{server.url}/invocations", content=PAYLOAD, headers=HEADERS)
        assert answer.status_code == 200 and answer.headers["X-Lockgate-Model-Version"] == "1"
        # A failed admin deploy leaves no empty endpoint behind.
        assert deploy(server, "models:/nothing/1", name="ghost").status_code == 404
        assert [e["name"] for e in httpx.get(f"{server.url}/endpoints").json()["endpoints"]] == ["late"]
    finally:
        server.stop()
