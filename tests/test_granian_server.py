"""``lockgate serve --server granian``: the other HTTP server keeps what the default one keeps.

A real ``lockgate serve`` under granian's embedded server, on a real sqlite registry and store:
predictions and the lineage headers through the lean transport, the ready probe, the request-head
bound (a 64 MiB head refused without being buffered, a head past the limit refused with
lockgate's 431 body), a hot swap under load with no failed request, and a graceful stop on
SIGTERM that still commits the inference log's open window. The same properties on uvicorn are
held by test_v2_hostile.py, test_gateway_lifecycle.py and test_inference_log.py.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.load_clients import hammer, in_background
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, registry_at
from tests.servers import Server, start_lockgate
from tests.test_inference_log import read_log
from tests.test_v2_hostile import COLUMNS, INFER, IRIS, IRIS_X, VALID, request_head, rss_bytes, send_head

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Server]]:
    workdir = tmp_path_factory.mktemp("granian")
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=registry.experiment())
        for version_rows in (150, 100):  # two versions: the hot swap moves from 1 to 2
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    LogisticRegression(max_iter=1000).fit(IRIS_X.head(version_rows), IRIS.target.head(version_rows)),
                    name="model", pip_requirements=PIP_REQUIREMENTS, registered_model_name="iris",
                    input_example=IRIS_X.head(3), serialization_format="cloudpickle",
                )  # fmt: skip
    server = start_lockgate(workdir, registry.gateway_env(), "models:/iris/1", "--server", "granian",
                            "--inference-log-sample", "1", "--inference-log-window", "3600",
                            ready_path="/ready")  # fmt: skip
    yield registry, server
    server.stop()


def split_body(rows: np.ndarray) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}).encode()


def test_it_is_granian_that_serves(served: tuple[Registry, Server]) -> None:
    _, server = served
    answer = httpx.get(f"{server.url}/ready", timeout=30)
    assert answer.status_code == 200
    assert answer.headers.get("server") == "granian"  # granian names itself in every answer


def test_predictions_and_lineage_answer_as_on_uvicorn(served: tuple[Registry, Server]) -> None:
    _, server = served
    rows = IRIS_X.to_numpy()[::15]
    expected = LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS.target).predict(IRIS_X.iloc[::15])
    answer = httpx.post(f"{server.url}/invocations", content=split_body(rows), timeout=60,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected.tolist()}
    assert answer.headers["x-lockgate-model-version"] == "1"
    assert len(answer.headers["x-lockgate-weights-commit"]) == 64
    v2 = httpx.post(server.url + INFER, content=VALID, timeout=60, headers={"Content-Type": "application/json"})
    assert v2.status_code == 200 and v2.json()["model_version"] == "1", v2.text
    wrong = httpx.post(f"{server.url}/invocations", content=b"{not json", timeout=60,
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert wrong.status_code == 400 and wrong.json()["error_code"] == "BAD_REQUEST", wrong.text
    unknown = httpx.post(f"{server.url}/endpoints/nope/invocations", content=split_body(rows), timeout=60,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert unknown.status_code == 404 and "nope" in unknown.json()["message"]


def test_the_request_head_bound_holds(served: tuple[Registry, Server]) -> None:
    _, server = served
    before = rss_bytes(server)
    huge = send_head(server, request_head(64 << 20))
    assert huge.startswith(b"HTTP/1.1 431 "), huge[:200]  # hyper's own bound: never reached Python
    assert rss_bytes(server) - before < 20 << 20
    past = send_head(server, request_head(40 << 10))  # past the 32 KiB limit, whole in one send
    assert past.startswith(b"HTTP/1.1 431 "), past[:200]
    assert b"LOCKGATE_MAX_HEADER_BYTES" in past
    within = send_head(server, request_head(8 << 10))
    assert within.startswith(b"HTTP/1.1 200 "), within[:200]


def test_a_hot_swap_under_load_fails_no_request(served: tuple[Registry, Server]) -> None:
    _, server = served
    body = split_body(IRIS_X.to_numpy()[:1])
    stop = threading.Event()
    thread, box = in_background(lambda: hammer(f"{server.url}/invocations", body, clients=8, until=stop))
    try:
        deployed = httpx.post(f"{server.url}/admin/endpoints", json={"name": "iris", "model_uri": "models:/iris/2"},
                              timeout=120)  # fmt: skip
        assert deployed.status_code == 200, deployed.text
        for _ in range(50):  # answers from version 2 after the swap
            httpx.post(
                f"{server.url}/invocations", content=body, timeout=60, headers={"Content-Type": "application/json"}
            )
    finally:
        stop.set()
        thread.join(timeout=120)
    (answers,) = box
    assert answers, "the load sent nothing"
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed during the swap: {failed[:3]}"
    assert {a.version for a in answers} == {"1", "2"}


def test_sigterm_stops_gracefully_and_commits_the_open_log_window(served: tuple[Registry, Server]) -> None:
    """Last in the module: it stops the server."""
    registry, server = served
    ids = set()
    for i in range(30):
        request_id = f"granian-{i}-{uuid.uuid4().hex[:8]}"
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        body = split_body(IRIS_X.to_numpy()[i : i + 1])
        answer = httpx.post(f"{server.url}/invocations", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        ids.add(request_id)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    log = read_log(registry.store_root, "iris")
    assert ids <= set(log["lockgate_request_id"])


def test_make_serve_and_the_image_default_to_uvicorn() -> None:
    from lockgate.gateway.settings import Settings

    assert Settings().server == "uvicorn"
    root = Path(__file__).resolve().parents[1]
    assert "granian" in (root / "Dockerfile").read_text(), "the image must carry the selectable server"
