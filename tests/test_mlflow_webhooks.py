"""MLflow registry webhooks: the verifier against MLflow's own signing code, and a real
``mlflow server`` delivering to a real ``lockgate serve`` whose poll interval is an hour.

Forged, stale and replayed deliveries are refused with a 4xx and move nothing; a delivery MLflow
signed moves the endpoint to the alias's new version long before any poll could.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from lockgate.gateway.mlflow_webhooks import WebhookRefused, WebhookVerifier
from tests.registry_helpers import Registry, weights
from tests.servers import Server, env_with, free_port, reset_mlflow_uris, start_lockgate, stop_pid, wait_http

SECRET = "lockgate-webhook-test-secret"
BODY = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "2026-12-07T00:00:00+00:00",
                   "data": {"name": "hooked", "alias": "champion", "version": "2"}})  # fmt: skip


def signed(
    body: str = BODY, *, secret: str = SECRET, at: float | None = None, delivery: str | None = None
) -> dict[str, str]:
    """Headers as MLflow's own delivery code signs them."""
    delivery_id = delivery or str(uuid.uuid4())
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, timestamp, body),
    }


def verify(verifier: WebhookVerifier, headers: dict[str, str], body: str = BODY, now: float | None = None) -> object:
    return verifier.verify(body.encode(), headers.get("X-MLflow-Delivery-Id"), headers.get("X-MLflow-Timestamp"),
                           headers.get("X-MLflow-Signature"), now)  # fmt: skip


# -- the verifier, against MLflow's signing code --------------------------------------------------


def test_a_delivery_mlflow_signed_is_believed_once() -> None:
    verifier = WebhookVerifier(SECRET)
    headers = signed()
    delivery = verify(verifier, headers)
    assert delivery.model_name == "hooked" and delivery.entity == "model_version_alias"  # type: ignore[attr-defined]
    with pytest.raises(WebhookRefused, match="received already") as replay:
        verify(verifier, headers)
    assert replay.value.status == 409


@pytest.mark.parametrize(
    ("headers", "status", "needle"),
    [
        (signed(secret="another secret"), 401, "signature does not match"),
        ({**signed(), "X-MLflow-Signature": "v2,abc"}, 401, "signature does not match"),
        ({k: v for k, v in signed().items() if k != "X-MLflow-Signature"}, 401, "needs"),
        (signed(at=time.time() - 3600), 400, "stale"),
        (signed(at=time.time() + 3600), 400, "stale"),
        ({**signed(), "X-MLflow-Timestamp": "12a"}, 400, "malformed"),
        (signed(delivery="x" * 500), 400, "malformed"),
    ],
)
def test_forged_stale_and_malformed_deliveries_are_refused(headers: dict[str, str], status: int, needle: str) -> None:
    with pytest.raises(WebhookRefused, match=needle) as refused:
        verify(WebhookVerifier(SECRET), headers)
    assert refused.value.status == status


def test_a_body_changed_after_signing_is_refused() -> None:
    headers = signed()
    with pytest.raises(WebhookRefused, match="signature"):
        verify(WebhookVerifier(SECRET), headers, BODY.replace("hooked", "other"))


def test_delivery_ids_are_forgotten_after_the_window() -> None:
    verifier = WebhookVerifier(SECRET, max_age_seconds=60)
    now = time.time()
    headers = signed(at=now)
    verify(verifier, headers, now=now)
    # Past the window the id is forgotten, but the timestamp is stale by then: still refused.
    with pytest.raises(WebhookRefused, match="stale"):
        verify(verifier, headers, now=now + 120)


# -- a real mlflow server delivering to a real gateway -------------------------------------------


@dataclass
class Hooked:
    gateway: Server
    tracking_uri: str
    registry: Registry

    def version(self) -> str:
        return str(httpx.get(f"{self.gateway.url}/endpoints/hooked", timeout=30).json()["version"])


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    from cryptography.fernet import Fernet

    workdir = tmp_path_factory.mktemp("webhooks")
    port = free_port()
    server_env = env_with({
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        # A test on 127.0.0.1 over http: MLflow delivers only to https on public addresses by default.
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        # One key for every server worker, or each makes its own and cannot read the others' secrets.
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    })  # fmt: skip
    log = open(workdir / "mlflow-server.log", "wb")  # noqa: SIM115 - closed after the server stops
    mlflow_server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=server_env, cwd=workdir,
    )  # fmt: skip
    tracking_uri = f"http://127.0.0.1:{port}"
    saved_store = os.environ.get("LOCKGATE_STORE")
    gateway = None
    try:
        wait_http(f"{tracking_uri}/health", timeout=120, proc=mlflow_server)
        os.environ["LOCKGATE_STORE"] = str(workdir / "store")
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        registry = Registry(tracking_uri, workdir / "store", workdir)
        for seed in (1, 2, 3):
            registry.log_weights_model("hooked", weights(seed, rows=8, cols=2))
        MlflowClient(tracking_uri).set_registered_model_alias("hooked", "champion", "1")
        env = registry.gateway_env(LOCKGATE_FOLLOW_INTERVAL="3600", LOCKGATE_MLFLOW_WEBHOOK_SECRET=SECRET)
        gateway = start_lockgate(workdir, env, "models:/hooked@champion", "--name", "hooked", ready_path="/ready")
        yield Hooked(gateway, tracking_uri, registry)
    finally:
        if gateway is not None:
            gateway.stop()
        reset_mlflow_uris()
        if saved_store is None:
            os.environ.pop("LOCKGATE_STORE", None)
        else:
            os.environ["LOCKGATE_STORE"] = saved_store
        stop_pid(mlflow_server)
        log.close()


def wait_for_version(hooked: Hooked, version: str, timeout: float = 60.0) -> float:
    """Seconds until the endpoint serves ``version`` (the poll interval is an hour: only a
    webhook can move it this soon)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if hooked.version() == version:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"the endpoint still serves {hooked.version()}, not {version}, after {timeout:g} s")


@pytest.mark.slow
def test_a_webhook_from_mlflow_moves_the_endpoint_and_forgeries_move_nothing(hooked: Hooked) -> None:
    client = MlflowClient(hooked.tracking_uri)
    url = f"{hooked.gateway.url}/hooks/mlflow"
    webhook = client.create_webhook(name="lockgate", url=url, events=["model_version_alias.created"], secret=SECRET)
    assert hooked.version() == "1"
    client.set_registered_model_alias("hooked", "champion", "2")
    moved_after = wait_for_version(hooked, "2")
    print(f"\nthe endpoint served version 2 {moved_after:.2f} s after the alias moved (poll interval: 3600 s)")

    # No webhook from here on: the alias moves to 3, and only a delivery the gateway believes can
    # make it notice before the hour's poll.
    client.delete_webhook(webhook.webhook_id)
    time.sleep(2)  # past the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL=1)
    client.set_registered_model_alias("hooked", "champion", "3")
    body = BODY.replace('"version": "2"', '"version": "3"')
    replayed = signed(body)
    assert httpx.post(url, content=body, headers=replayed, timeout=30).status_code == 200
    wait_for_version(hooked, "3")  # a believed delivery moves it
    client.set_registered_model_alias("hooked", "champion", "2")
    for headers, status in (
        (signed(body, secret="forged"), 401),
        (signed(body, at=time.time() - 3600), 400),
        (replayed, 409),
        ({"Content-Type": "application/json"}, 401),
    ):
        answer = httpx.post(url, content=body, headers=headers, timeout=30)
        assert answer.status_code == status, answer.text
        assert set(answer.json()) == {"error_code", "message"}
    time.sleep(2)
    assert hooked.version() == "3", "a refused delivery moved the endpoint"
    assert httpx.post(url, content=body, headers=signed(body), timeout=30).status_code == 200
    wait_for_version(hooked, "2")


@pytest.mark.slow
def test_webhooks_are_off_without_a_secret(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "LOCKGATE_STORE": str(tmp_path / "store"),
           "LOCKGATE_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    server = start_lockgate(tmp_path, env)
    try:
        answer = httpx.post(f"{server.url}/hooks/mlflow", content=BODY, headers=signed(), timeout=30)
        assert answer.status_code == 404 and "LOCKGATE_MLFLOW_WEBHOOK_SECRET" in answer.json()["message"]
    finally:
        server.stop()
