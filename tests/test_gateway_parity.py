"""Parity with a real ``mlflow models serve`` on the same registered model, on every serving
path: the same status code, and the same predictions or the same error_code, for every payload.

- ``sklearn`` (lean parsing, batching, the native estimator): successful bodies are
  byte-identical.
- ``onnx`` (the fast path, with ``precision: float32`` so a linear regressor's float64 graph
  serves even where a sum in another order changes its last bit): predictions equal within the
  fast path's tolerance (relative 1e-5); everything else is identical. Under the default
  ``precision: exact`` such a graph serves only if it is bit-identical
  (``tests/test_gateway_exactness.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from tests.registry_helpers import PIP_REQUIREMENTS, Registry
from tests.servers import (
    Server,
    reset_mlflow_uris,
    start_lockgate,
    start_mlflow_models_serves,
    stop_group,
    wait_for_servers,
)

COLUMNS = ["a", "b", "c", "d"]
ROW = [0.1, 0.2, 0.3, 0.4]
ROW2 = [1.0, -2.0, 3.5, 0.0]


def split(columns: list[str], data: list[list[object]], **extra: object) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


JSON = "application/json"
CASES: list[tuple[str, bytes, str]] = [
    ("split", split(COLUMNS, [ROW, ROW2]), JSON),
    (
        "split with index",
        json.dumps({"dataframe_split": {"index": [5, 6], "columns": COLUMNS, "data": [ROW, ROW2]}}).encode(),
        JSON,
    ),
    ("records", json.dumps({"dataframe_records": [dict(zip(COLUMNS, ROW, strict=True))]}).encode(), JSON),
    ("instances of dicts", json.dumps({"instances": [dict(zip(COLUMNS, ROW, strict=True))]}).encode(), JSON),
    ("instances of lists", json.dumps({"instances": [ROW]}).encode(), JSON),
    ("inputs as columns", json.dumps({"inputs": {c: [v] for c, v in zip(COLUMNS, ROW, strict=True)}}).encode(), JSON),
    ("inputs as rows", json.dumps({"inputs": [ROW, ROW2]}).encode(), JSON),
    ("params", split(COLUMNS, [ROW], params={"alpha": 1}), JSON),
    ("csv", b"a,b,c,d\n0.1,0.2,0.3,0.4\n1,2,3,4\n", "text/csv"),
    ("csv missing column", b"a,b,c\n0.1,0.2,0.3\n", "text/csv"),
    ("csv charset", b"a,b,c,d\n0.1,0.2,0.3,0.4\n", "text/csv; charset=utf-8"),
    ("missing column", split(COLUMNS[:3], [ROW[:3]]), JSON),
    ("extra column", split([*COLUMNS, "e"], [[*ROW, 9.0]]), JSON),
    ("wrong dtype", split(COLUMNS, [["x", 0.2, 0.3, 0.4]]), JSON),
    ("integers for doubles", split(COLUMNS, [[1, 2, 3, 4]]), JSON),
    ("huge integers", split(COLUMNS, [[10**30, 2**64 - 1, 2**63, -(2**63)]]), JSON),
    ("columns reordered", split(list(reversed(COLUMNS)), [list(reversed(ROW))]), JSON),
    ("records reordered", json.dumps({"dataframe_records": [{"d": 0.4, "c": 0.3, "b": 0.2, "a": 0.1}]}).encode(), JSON),
    ("boolean", split(COLUMNS, [[True, 0.2, 0.3, 0.4]]), JSON),
    ("many rows", split(COLUMNS, [[i / 7, i / 3, -i, i * 1.5] for i in range(300)]), JSON),
    ("NaN", split(COLUMNS, [[None, 0.2, 0.3, 0.4]]), JSON),
    ("empty frame", split(COLUMNS, []), JSON),
    (
        "two format keys",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}, "instances": [ROW]}).encode(),
        JSON,
    ),
    ("unknown key", json.dumps({"rows": [ROW]}).encode(), JSON),
    ("invalid JSON", b'{"dataframe_split": {', JSON),
    ("JSON list", json.dumps([ROW]).encode(), JSON),
    ("split without columns", json.dumps({"dataframe_split": {"data": [ROW]}}).encode(), JSON),
    ("wrong content type", split(COLUMNS, [ROW]), "text/plain"),
    ("charset not utf-8", split(COLUMNS, [ROW]), "application/json; charset=latin-1"),
    ("unknown content-type parameter", split(COLUMNS, [ROW]), "application/json; format=pandas-split"),
]


@pytest.fixture(scope="module")
def both_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Server], Server, Registry]]:
    workdir = tmp_path_factory.mktemp("parity")
    store_root = workdir / "store"
    tracking = f"sqlite:///{workdir / 'mlflow.db'}"

    saved = os.environ.get("LOCKGATE_STORE")
    os.environ["LOCKGATE_STORE"] = str(store_root)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    try:
        X = pd.DataFrame(np.random.default_rng(0).random((50, 4)), columns=COLUMNS)
        y = X.to_numpy() @ np.array([1.0, 2.0, 3.0, 4.0])
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("parity", artifact_location="lockgate://models@main/p")
        )
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                LinearRegression().fit(X, y),
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name="parity",
                input_example=X.head(2),
            )
    finally:
        reset_mlflow_uris()
        if saved is None:
            os.environ.pop("LOCKGATE_STORE", None)
        else:
            os.environ["LOCKGATE_STORE"] = saved
    env = {
        "MLFLOW_TRACKING_URI": tracking,
        "LOCKGATE_STORE": str(store_root),
        "LOCKGATE_CACHE_DIR": str(workdir / "cache"),
    }
    # mlflow models serve reads this model through lockgate's artifact repository plugin too.
    # It comes up while the two gateways start.
    spawned = start_mlflow_models_serves(
        workdir, tracking, ["models:/parity/1"], {"LOCKGATE_STORE": str(store_root)}, wait=False
    )
    reference = spawned["models:/parity/1"]
    gateways: dict[str, Server] = {}
    try:
        for path, onnx in (("onnx", "true"), ("sklearn", "false")):
            settings = {"LOCKGATE_ONNX": onnx, "LOCKGATE_PRECISION": "float32"}
            gateways[path] = start_lockgate(workdir, {**env, **settings}, "models:/parity/1", ready_path="/ready")
        wait_for_settled_path(gateways["onnx"].url, "parity")
        wait_for_servers(spawned)
        yield gateways, reference, Registry(tracking, store_root, workdir)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        stop_group(reference.proc)


Servers = tuple[dict[str, Server], Server, Registry]
PATHS = ("onnx", "sklearn")


def wait_for_settled_path(url: str, endpoint: str, timeout: float = 120) -> dict[str, object]:
    """The ONNX conversion runs in the background after /ready: wait until it has settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        serving = httpx.get(f"{url}/endpoints/{endpoint}").json()["serving"]
        if not serving["onnx_pending"]:
            return dict(serving)
        time.sleep(0.1)
    raise AssertionError(f"the ONNX conversion of {endpoint} did not settle in {timeout}s")


def _outcome(response: httpx.Response) -> tuple[int, object]:
    if response.status_code == 200:
        return 200, response.json()["predictions"]
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            return response.status_code, response.json().get("error_code")
        except ValueError:
            pass
    return response.status_code, response.text


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_each_gateway_serves_through_its_path(both_servers: Servers, path: str) -> None:
    gateways, _, _ = both_servers
    serving = httpx.get(f"{gateways[path].url}/endpoints/parity").json()["serving"]
    assert serving["name"] == path
    assert serving["lean_parsing"] is True
    if path == "onnx":
        assert serving["onnx_check"]["ok"] is True
        assert serving["onnx_check"]["rows_checked"] >= 2
    else:
        assert "turned off" in serving["reason"]
    metrics = httpx.get(f"{gateways[path].url}/metrics").text
    assert f'serving_path="{path}"' in metrics, "the info metric names the path that serves"


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("case", "body", "content_type"), CASES, ids=[c[0] for c in CASES])
def test_same_answer_as_mlflow_models_serve(
    both_servers: Servers, path: str, case: str, body: bytes, content_type: str
) -> None:
    gateways, reference, _ = both_servers
    gateway = gateways[path]
    ours = httpx.post(f"{gateway.url}/invocations", content=body, headers={"Content-Type": content_type}, timeout=60)
    theirs = httpx.post(
        f"{reference.url}/invocations", content=body, headers={"Content-Type": content_type}, timeout=60
    )
    mine, reference_outcome = _outcome(ours), _outcome(theirs)
    message = f"{case}: lockgate {ours.text[:300]!r} vs mlflow {theirs.text[:300]!r}"
    if path == "onnx" and ours.status_code == 200 == theirs.status_code:
        assert np.allclose(mine[1], reference_outcome[1], rtol=1e-5, atol=0), message  # type: ignore[arg-type]
    else:
        assert mine == reference_outcome, message
    if ours.status_code == 200:
        if path == "sklearn":
            assert ours.content == theirs.content, "successful bodies are byte-identical"
        assert ours.headers["X-Lockgate-Model-Version"] == "1"
        assert len(ours.headers["X-Lockgate-Weights-Commit"]) == 64


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_lean_path_takes_what_it_covers_and_only_that(both_servers: Servers, path: str) -> None:
    """Plain numeric split/records/instances/inputs requests skip MLflow's parser (the batcher counts them);
    a request with params, an index or CSV goes through MLflow's code."""
    gateways, _, _ = both_servers
    url = gateways[path].url

    def lean_requests() -> int:
        return int(httpx.get(f"{url}/endpoints/parity").json()["serving"]["batching"]["requests"])

    for body, content_type, lean in (
        (split(COLUMNS, [ROW, ROW2]), JSON, True),
        (split(list(reversed(COLUMNS)), [list(reversed(ROW))]), JSON, True),
        (json.dumps({"dataframe_records": [dict(zip(COLUMNS, ROW, strict=True))]}).encode(), JSON, True),
        (json.dumps({"instances": [dict(zip(COLUMNS, ROW, strict=True))]}).encode(), JSON, True),
        (json.dumps({"inputs": {c: [v] for c, v in zip(COLUMNS, ROW, strict=True)}}).encode(), JSON, True),
        (json.dumps({"instances": [ROW]}).encode(), JSON, False),
        (split(COLUMNS, [ROW], params={"alpha": 1}), JSON, False),
        (split(COLUMNS, [[True, 0.2, 0.3, 0.4]]), JSON, False),
        (b"a,b,c,d\n0.1,0.2,0.3,0.4\n", "text/csv", False),
    ):
        before = lean_requests()
        response = httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (200, 400)
        assert lean_requests() - before == (1 if lean else 0), body


@pytest.mark.slow
def test_named_route_and_meta_routes_match(both_servers: Servers) -> None:
    gateways, reference, _ = both_servers
    gateway = gateways["sklearn"]
    named = httpx.post(
        f"{gateway.url}/endpoints/parity/invocations", content=CASES[0][1], headers={"Content-Type": JSON}
    )
    default = httpx.post(f"{reference.url}/invocations", content=CASES[0][1], headers={"Content-Type": JSON})
    assert named.content == default.content
    for route in ("/ping", "/health", "/version"):
        ours, theirs = httpx.get(gateway.url + route), httpx.get(reference.url + route)
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), route
    assert (
        httpx.get(gateway.url + "/invocations").status_code
        == httpx.get(reference.url + "/invocations").status_code
        == 405
    )
    assert httpx.get(gateway.url + "/nowhere").status_code == httpx.get(reference.url + "/nowhere").status_code == 404
