"""A gateway SIGKILLed and restarted while the MLflow registry is down serves the version it was
serving, pinned and verified, from its own cache; once the registry is back, follow mode moves
with the alias as usual. Real parts: an `mlflow server` process, a `lockgate serve` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from tests.registry_helpers import Registry, weights
from tests.servers import env_with, free_port, reset_mlflow_uris, start_lockgate, stop_pid, wait_http

PAYLOAD = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 1.0, 1.0]]}}).encode()
JSON = {"Content-Type": "application/json"}


def start_registry(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    venv_bin = str(Path(sys.executable).parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workdir / 'reg.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
        env=env_with({"PATH": f"{venv_bin}:{os.environ['PATH']}"}),
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
    return proc


def wait_for(condition: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


@pytest.mark.slow
def test_a_restart_with_the_registry_down_serves_the_pinned_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    tracking = f"http://127.0.0.1:{port}"
    registry_proc = start_registry(tmp_path, port)
    gateway = None
    try:
        monkeypatch.setenv("LOCKGATE_STORE", str(tmp_path / "store"))
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)
        registry = Registry(tracking, tmp_path / "store", tmp_path)
        registry.log_weights_model("warm", weights(1, rows=64, cols=4))
        registry.log_weights_model("warm", weights(2, rows=64, cols=4))
        registry.client.set_registered_model_alias("warm", "live", "1")
        env = registry.gateway_env(LOCKGATE_FOLLOW_INTERVAL="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        gateway = start_lockgate(tmp_path, env, "models:/warm@live", ready_path="/ready")
        first = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON)
        assert first.status_code == 200 and first.headers["X-Lockgate-Model-Version"] == "1"

        # A restart with the registry up serves the pin first (LOCKGATE_WARM_START, on by
        # default), then the registry vouches for it: the history says `reconciled`.
        gateway.stop()
        gateway = start_lockgate(tmp_path, env, "models:/warm@live", ready_path="/ready")
        assert httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON).content == first.content

        def reconciled() -> bool:
            state = httpx.get(f"{gateway.url}/endpoints/warm").json()
            return any(event["action"] == "reconciled" for event in state["history"]) and not any(
                "local pin" in note for note in state["notes"]
            )

        wait_for(reconciled, "the warm restart was never reconciled with the registry")

        gateway.proc.kill()  # SIGKILL: no clean shutdown
        gateway.proc.wait(timeout=30)
        stop_pid(registry_proc)  # the registry goes down

        gateway = start_lockgate(tmp_path, env, "models:/warm@live", ready_path="/ready")
        assert httpx.get(f"{gateway.url}/ready").status_code == 200
        answer = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON)
        assert answer.status_code == 200 and answer.content == first.content
        assert answer.headers["X-Lockgate-Weights-Commit"] == first.headers["X-Lockgate-Weights-Commit"]
        state = httpx.get(f"{gateway.url}/endpoints/warm").json()
        assert any("resolved from local pin" in note for note in state["notes"]), state["notes"]

        registry_proc = start_registry(tmp_path, port)  # the registry is back
        registry.client.set_registered_model_alias("warm", "live", "2")

        def on_version_2() -> bool:
            return bool(httpx.get(f"{gateway.url}/endpoints/warm").json()["version"] == "2")

        wait_for(on_version_2, "the gateway never followed the alias once the registry was back")
        state = httpx.get(f"{gateway.url}/endpoints/warm").json()
        assert not any("local pin" in note for note in state["notes"])
        moved = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON)
        assert moved.status_code == 200 and moved.headers["X-Lockgate-Model-Version"] == "2"
    finally:
        reset_mlflow_uris()
        if gateway is not None:
            gateway.stop()
        stop_pid(registry_proc)


def test_without_a_pin_or_a_cached_version_the_outage_is_still_an_error(tmp_path: Path) -> None:
    from lockgate.loader.cache import ModelCache
    from lockgate.loader.local_pins import LocalPins
    from lockgate.loader.resolved import ResolvedModel, WeightsLocation

    pins = LocalPins(tmp_path / "pins")
    assert pins.recall("models:/x@y") is None
    resolved = ResolvedModel(
        uri="models:/x@y", reference="alias", moves=True, name="x", version="3", run_id="r",
        weights=WeightsLocation("c" * 64, "m", "models"), dataset_commits=("d" * 64,), flavors=("sklearn",),
    )  # fmt: skip
    pins.remember(resolved)
    recalled = pins.recall("models:/x@y")
    assert recalled is not None and recalled.weights == resolved.weights and recalled.version == "3"
    assert recalled.dataset_commits == ("d" * 64,) and "local pin" in recalled.notes[-1]
    assert not ModelCache(tmp_path / "cache").is_complete(recalled.weights.cache_key), (
        "a pin alone is not enough: the loader uses it only when the version is complete in the cache"
    )


def test_prefer_pin_serves_a_complete_pin_without_asking_the_registry(tmp_path: Path) -> None:
    """The loader's side of LOCKGATE_WARM_START: with prefer_pin a complete pin is taken and the
    registry is not asked; without it (LOCKGATE_WARM_START=false) the registry is asked first."""
    from lockgate.loader.cache import ModelCache
    from lockgate.loader.local_pins import PIN_FIRST_NOTE
    from lockgate.loader.model_loader import ModelLoader
    from lockgate.loader.resolved import ResolvedModel, WeightsLocation

    resolved = ResolvedModel(
        uri="models:/x/3", reference="version", moves=False, name="x", version="3", run_id="r",
        weights=WeightsLocation("c" * 64, "m", "models"), dataset_commits=(), flavors=("sklearn",),
    )  # fmt: skip

    class CountingResolver:
        calls = 0

        def resolve(self, uri: str) -> ResolvedModel:
            self.calls += 1
            return resolved

    class CompleteCache(ModelCache):
        # The one stand-in here: a cache that says the pinned version is complete, so the test
        # needs no store; the pin file and the loader are the real ones.
        def is_complete(self, key: str) -> bool:
            return key == resolved.weights.cache_key

    resolver = CountingResolver()
    loader = ModelLoader(resolver, CompleteCache(tmp_path / "cache"), open_store=lambda: None)  # type: ignore[arg-type]
    assert loader.resolve("models:/x/3", prefer_pin=True).version == "3"
    assert resolver.calls == 1, "no pin yet: the registry is asked, and the answer pinned"
    pinned = loader.resolve("models:/x/3", prefer_pin=True)
    assert resolver.calls == 1 and PIN_FIRST_NOTE in pinned.notes
    assert PIN_FIRST_NOTE not in loader.resolve("models:/x/3", allow_pin=True).notes
    assert resolver.calls == 2, "without prefer_pin the registry is asked first"
