"""Exact by default, against a live ``mlflow models serve`` on the same registered models:

- a classifier is served by a float64 ONNX graph, so rows within 1e-9 of a decision boundary
  get MLflow's labels byte for byte (a float32 graph flips some of them: checked below, so the
  rows really are on the edge);
- a tree regressor is exact by default too: lockgate's tree engine answers MLflow's bytes;
  ``precision: float32`` opts in to the float32 graph, which declares its contract (1e-5);
  rows float32 cannot represent get MLflow's own answer (or its error), not -Infinity, either way;
- Content-Type is read exactly as MLflow reads it on every path;
- ``precision: exact`` (the default) keeps only bit-identical graphs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.registry_helpers import PIP_REQUIREMENTS, registry_at
from tests.servers import Server, start_lockgate, start_mlflow_models_serves, stop_group, wait_for_servers

pytestmark = pytest.mark.slow
IRIS = load_iris(as_frame=True)
DIABETES = load_diabetes(as_frame=True)


def boundary_rows(model: LogisticRegression, frame: pd.DataFrame, count: int = 20) -> pd.DataFrame:
    """Rows within 1e-9..2e-8 of the boundary between two classes, found by bisection."""
    a, b = frame.iloc[[60]].to_numpy(), frame.iloc[[120]].to_numpy()  # a versicolor, a virginica
    lo, hi = 0.0, 1.0
    label_a = model.predict(a)[0]
    for _ in range(200):
        mid = (lo + hi) / 2
        if model.predict(a + mid * (b - a))[0] == label_a:
            lo = mid
        else:
            hi = mid
    offsets = [k * 1e-9 for k in range(1, count + 1)]
    rows = [a + (lo + sign * off) * (b - a) for off in offsets for sign in (-1, 1)]
    return pd.DataFrame(np.vstack(rows), columns=frame.columns)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server | object]]:
    workdir = tmp_path_factory.mktemp("exact")
    classifier = LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS.target)
    regressor = RandomForestRegressor(30, random_state=0).fit(DIABETES.data, DIABETES.target)
    linear = LinearRegression().fit(DIABETES.data, DIABETES.target)
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("x", artifact_location="lockgate://models@main/x"))
        for name, model, frame in (
            ("iris", classifier, IRIS.data), ("forest", regressor, DIABETES.data), ("linear", linear, DIABETES.data)
        ):  # fmt: skip
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=name,
                    input_example=frame.head(5),
                    serialization_format="cloudpickle",
                )
    store_root, tracking = registry.store_root, registry.tracking_uri
    env = {"MLFLOW_TRACKING_URI": tracking, "LOCKGATE_STORE": str(store_root), "LOCKGATE_CACHE_DIR": str(workdir / "c")}
    started: list[Server] = []
    references: list[Server] = []
    uris = ["models:/iris/1", "models:/forest/1"]
    # MLflow's references start first and come up while the gateway loads and converts.
    spawned = start_mlflow_models_serves(workdir, tracking, uris, {"LOCKGATE_STORE": str(store_root)}, wait=False)
    references.extend(spawned[uri] for uri in uris)
    try:
        gateway = start_lockgate(workdir, env, "models:/iris/1", "models:/forest/1", "models:/linear/1",
                                 ready_path="/ready")  # fmt: skip
        started.append(gateway)
        for name in ("iris", "forest", "linear"):
            settle(gateway.url, name)
        # The same versions again, opting in to float32 graphs, on the same gateway and cache.
        for name in ("forest", "linear"):
            body = {"name": f"{name}-float32", "model_uri": f"models:/{name}/1", "precision": "float32"}
            deployed = httpx.post(f"{gateway.url}/admin/endpoints", json=body, timeout=120)
            assert deployed.status_code == 200, deployed.text
            settle(gateway.url, f"{name}-float32")
        wait_for_servers(spawned)
        yield {"gateway": gateway, "iris": references[0], "forest": references[1], "classifier": classifier,
               "env": env, "workdir": workdir}  # fmt: skip
    finally:
        for server in started:
            server.stop()
        for reference in references:
            stop_group(reference.proc)


def settle(url: str, name: str) -> dict[str, object]:
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        serving = httpx.get(f"{url}/endpoints/{name}").json()["serving"]
        if not serving["onnx_pending"]:
            return dict(serving)
        time.sleep(0.2)
    raise AssertionError(f"{name}: the ONNX conversion did not settle")


def post(url: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": content_type}, timeout=60)


def split_body(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def test_the_declared_contracts(servers: dict[str, object]) -> None:
    gateway: Server = servers["gateway"]  # type: ignore[assignment]
    iris = httpx.get(f"{gateway.url}/endpoints/iris").json()["serving"]
    assert iris["name"] == "onnx" and iris["onnx_check"]["precision"] == "float64"
    assert iris["onnx_check"]["contract"] == "exact"
    forest = httpx.get(f"{gateway.url}/endpoints/forest").json()["serving"]
    assert forest["name"] == "trees" and forest["check"]["contract"] == "exact", forest
    assert forest["check"]["precision"] == "float64" and forest["check"]["threshold_rows"] > 100, forest
    assert forest["options"]["precision"] == "exact"
    # Opted in: the float32 graph, with its declared tolerance.
    fast = httpx.get(f"{gateway.url}/endpoints/forest-float32").json()["serving"]
    assert fast["name"] == "onnx" and fast["check"]["contract"] == "float32~1e-05", fast
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'numeric_contract="float32~1e-05"' in metrics and 'numeric_contract="exact"' in metrics
    # By default a linear graph serves only if it was bit-identical on every checked row (a sum
    # in another order may differ in the last bit); opted in, float64 within 1e-12 serves.
    linear = httpx.get(f"{gateway.url}/endpoints/linear").json()["serving"]
    if linear["name"] == "onnx":
        assert linear["onnx_check"]["exact"] is True, linear
    else:
        assert "not bit-identical" in linear["reason"], linear
    relaxed = httpx.get(f"{gateway.url}/endpoints/linear-float32").json()["serving"]
    assert relaxed["name"] == "onnx" and relaxed["onnx_check"]["precision"] == "float64", relaxed


def test_rows_on_a_decision_boundary_get_mlflows_labels(servers: dict[str, object]) -> None:
    gateway: Server = servers["gateway"]  # type: ignore[assignment]
    reference: Server = servers["iris"]  # type: ignore[assignment]
    classifier: LogisticRegression = servers["classifier"]  # type: ignore[assignment]
    rows = boundary_rows(classifier, IRIS.data)
    # The rows are really on the edge: a float32 graph of this very model flips some of them.
    import onnxruntime
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    graph = convert_sklearn(
        classifier,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    float32_labels = session.run(None, {"input": rows.to_numpy(np.float32)})[0]
    assert (float32_labels != classifier.predict(rows)).sum() > 0, "these rows would not catch a float32 graph"
    body = split_body(rows)
    ours, theirs = post(f"{gateway.url}/endpoints/iris", body), post(reference.url, body)
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content, "boundary rows answered differently from mlflow models serve"


@pytest.mark.parametrize("endpoint", ["forest", "forest-float32"])
def test_rows_float32_cannot_represent_get_mlflows_answer(servers: dict[str, object], endpoint: str) -> None:
    gateway: Server = servers["gateway"]  # type: ignore[assignment]
    reference: Server = servers["forest"]  # type: ignore[assignment]
    for value in (1e39, -3.5e38):
        frame = DIABETES.data.head(3).copy()
        frame.iloc[1, 2] = value
        body = split_body(frame)
        ours, theirs = post(f"{gateway.url}/endpoints/{endpoint}", body), post(reference.url, body)
        assert ours.status_code == theirs.status_code, (ours.text[:300], theirs.text[:300])
        assert b"Infinity" not in ours.content
        if theirs.status_code != 200:
            assert ours.json()["error_code"] == theirs.json()["error_code"]
    plain = split_body(DIABETES.data.head(3))
    ours, theirs = post(f"{gateway.url}/endpoints/{endpoint}", plain), post(reference.url, plain)
    if endpoint == "forest":  # exact by default: MLflow's bytes
        assert ours.content == theirs.content
    else:
        assert np.allclose(ours.json()["predictions"], theirs.json()["predictions"], rtol=1e-5, atol=0)


def test_the_default_forest_answers_mlflows_bytes(servers: dict[str, object]) -> None:
    """Every diabetes row, one request each and all in one: byte for byte what MLflow answers."""
    gateway: Server = servers["gateway"]  # type: ignore[assignment]
    reference: Server = servers["forest"]  # type: ignore[assignment]
    whole = split_body(DIABETES.data)
    assert post(f"{gateway.url}/endpoints/forest", whole).content == post(reference.url, whole).content
    for i in range(0, len(DIABETES.data), 11):
        one = split_body(DIABETES.data.iloc[[i]])
        assert post(f"{gateway.url}/endpoints/forest", one).content == post(reference.url, one).content, i


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json", "application/json; Charset=utf-8", "application/json;",
     "application/json; charset=UTF-8", "application/json ; charset=utf-8"],
)  # fmt: skip
def test_content_type_is_read_as_mlflow_reads_it(servers: dict[str, object], content_type: str) -> None:
    gateway: Server = servers["gateway"]  # type: ignore[assignment]
    reference: Server = servers["iris"]  # type: ignore[assignment]
    body = split_body(IRIS.data.head(2))
    ours = post(f"{gateway.url}/endpoints/iris", body, content_type)
    theirs = post(reference.url, body, content_type)
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), content_type


def test_an_exact_endpoint_does_not_take_the_fast_path_from_the_others(servers: dict[str, object]) -> None:
    """The linear deploy (exact) may have found no bit-identical graph; a later float32 deploy of
    the forest on the same cache must still get its float32 graph."""
    workdir = servers["workdir"]
    env: dict[str, str] = {**servers["env"], "LOCKGATE_PRECISION": "float32"}  # type: ignore[dict-item]
    again = start_lockgate(workdir, env, "models:/forest/1", ready_path="/ready")  # type: ignore[arg-type]
    try:
        serving = settle(again.url, "forest")
        assert serving["name"] == "onnx" and serving["onnx_check"]["contract"] == "float32~1e-05", serving
    finally:
        again.stop()


def test_a_restart_serves_the_forests_recorded_engine_before_sklearn_loads(servers: dict[str, object]) -> None:
    """The forest's tree engine passed its check in the background; a restart on the same cache
    serves it from its record before the estimator is unpickled, with MLflow's bytes."""
    workdir = servers["workdir"]
    env: dict[str, str] = servers["env"]  # type: ignore[assignment]
    reference: Server = servers["forest"]  # type: ignore[assignment]
    again = start_lockgate(workdir, env, "models:/forest/1", ready_path="/ready")  # type: ignore[arg-type]
    try:
        endpoint = httpx.get(f"{again.url}/endpoints/forest").json()
        assert endpoint["serving_path"] == "trees" and endpoint["serving"]["check"]["from_record"], endpoint["serving"]
        assert endpoint["load_report"]["native_deferred"] is True
        body = split_body(DIABETES.data.head(9))
        assert post(f"{again.url}/endpoints/forest", body).content == post(reference.url, body).content
    finally:
        again.stop()
