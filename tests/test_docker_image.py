"""The image, built and run for real (``make docker-test``; ``.ci/run`` runs it).

A Debian dockerd started by the test builds the Dockerfile on a debootstrapped stand-in for
``python:3.11-slim`` (see tests/dockerd.py). The container runs on 127.0.0.1 (host network)
against a registry and store that the test prepares with the demo, gets the demo model
deployed through the admin API, serves a prediction with lineage headers, exports /metrics and
turns healthy by its own HEALTHCHECK. Everything started here is stopped by pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dockerd import DockerDaemon
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "lockgate:docker-test"
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DockerDaemon]:
    started = DockerDaemon.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def image(daemon: DockerDaemon) -> str:
    daemon.ensure_base_image()
    build = daemon.run("build", "--network", "host", "-t", IMAGE, str(ROOT), check=False, capture=True)
    assert build.returncode == 0, build.stdout.decode()[-4000:] + build.stderr.decode()[-4000:]
    return IMAGE


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's registry and store, in the directory the container mounts as its volume."""
    data = tmp_path_factory.mktemp("volume")
    env = {
        **os.environ,
        "LOCKGATE_STORE": str(data / "store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}",
        "MLFLOW_REGISTRY_URI": f"sqlite:///{data / 'mlflow.db'}",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "diabetes_demo.py")], cwd=data, env=env, check=True,
        capture_output=True, timeout=600,
    )  # fmt: skip
    # The image runs as uid 10001; the volume must be its own, as a Kubernetes fsGroup would make it.
    subprocess.run(["chown", "-R", "10001:10001", str(data)], check=True)
    return data


def wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


def test_image_serves_the_demo_model(daemon: DockerDaemon, image: str, demo_data: Path) -> None:
    port = free_port()
    name = f"lockgate-test-{port}"
    daemon.run(
        "run", "-d", "--name", name, "--network", "host", "-v", f"{demo_data}:/var/lib/lockgate",
        "-e", "LOCKGATE_HOST=127.0.0.1", "-e", f"LOCKGATE_PORT={port}", image, capture=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health")
        assert daemon.run("exec", name, "id", "-u", capture=True).stdout.strip() == b"10001"

        # Deploy the demo model through the admin API (the container's loopback is ours: host network).
        deployed = httpx.post(f"{url}/admin/endpoints", json={"model_uri": "models:/diabetes/Production"}, timeout=300)
        assert deployed.status_code == 200, deployed.text
        endpoint = deployed.json()
        assert endpoint["name"] == "diabetes" and endpoint["status"] == "ready"
        assert httpx.get(f"{url}/ready").status_code == 200

        body = httpx.get(f"{url}/endpoints/diabetes/example").content
        answer = httpx.post(
            f"{url}/endpoints/diabetes/invocations", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) >= 1 and all(isinstance(p, float) for p in predictions)
        assert answer.headers["X-Lockgate-Weights-Commit"] == endpoint["weights_commit"]
        assert len(answer.headers["X-Lockgate-Weights-Commit"]) == 64
        assert answer.headers["X-Lockgate-Dataset-Commit"] == endpoint["dataset_commit"] != "none"
        assert answer.headers["X-Lockgate-Model-Version"] == str(endpoint["version"])

        metrics = httpx.get(f"{url}/metrics").text
        served = [
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "lockgate_requests_total"
            and sample.labels.get("endpoint") == "diabetes"
            and sample.labels.get("status") == "200"
        ]
        assert served and served[0] >= 1, "the prediction is counted in /metrics"
        assert "lockgate_endpoint_info{" in metrics and f'weights_commit="{endpoint["weights_commit"]}"' in metrics

        # The image's own HEALTHCHECK turns the container healthy.
        deadline = time.monotonic() + 90
        status = b""
        while time.monotonic() < deadline:
            status = daemon.run("inspect", "--format", "{{.State.Health.Status}}", name, capture=True).stdout.strip()
            if status == b"healthy":
                break
            time.sleep(2)
        assert status == b"healthy"
        size = daemon.run("image", "inspect", "--format", "{{.Size}}", image, capture=True).stdout.strip()
        print(f"\nimage {image}: {int(size) / 1e6:.0f} MB; prediction {predictions[0]:.2f}")
    finally:
        logs = daemon.run("logs", name, check=False, capture=True)
        daemon.run("rm", "-f", name, check=False, capture=True)
        print(logs.stdout.decode()[-2000:], logs.stderr.decode()[-2000:])
