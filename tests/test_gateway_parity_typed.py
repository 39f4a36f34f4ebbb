"""Parity with a live ``mlflow models serve`` on typed models, through every serving path:

- ``fraud``: a ``Pipeline`` of a ``ColumnTransformer`` (``OneHotEncoder`` on string columns,
  ``StandardScaler`` on numeric ones) and a random forest, served by the typed lean path into a
  float64 ONNX graph with one input per column (``fraud``) and into the native pipeline
  (``fraud-native``, ONNX off);
- ``flags``: long, integer, boolean, float and double columns into a linear model, the same two
  ways (``flags``, ``flags-native``);
- ``scaled``: a custom pyfunc with params, served through MLflow's own code.

Every case must give the same status and either the same bytes (200; within the endpoint's
declared float64 contract where it is not ``exact``) or the same error_code. The lean path must
really take the plain forms (split, records, instances, inputs): the batcher counts them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.registry_helpers import PIP_REQUIREMENTS, registry_at
from tests.servers import Server, start_lockgate, start_mlflow_models_serves, stop_group, wait_for_servers

pytestmark = pytest.mark.slow
JSON = "application/json"


def fraud_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 50.0, rows).round(2),
            "hour": rng.integers(0, 24, rows).astype(np.int64),
            "merchant": rng.choice(["grocery", "travel", "online", "fuel"], rows),
            "country": rng.choice(["DE", "FR", "US"], rows),
        }
    )


def flags_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "visits": rng.integers(0, 1000, rows).astype(np.int64),
            "age": rng.integers(18, 90, rows).astype(np.int32),
            "member": rng.random(rows) > 0.5,
            "score": rng.random(rows).astype(np.float32),
            "ratio": rng.random(rows),
        }
    )


class Scaled(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        factor = (params or {}).get("factor", 1.0)
        return (model_input["x"] * factor + model_input["n"]).to_numpy()


def fraud_model() -> tuple[Pipeline, pd.DataFrame]:
    frame = fraud_frame(400)
    target = ((frame["merchant"] == "travel") & (frame["amount"] > 80)) | (frame["hour"] < 4)
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["merchant", "country"]),
            ("numbers", StandardScaler(), ["amount", "hour"]),
        ]
    )
    pipeline = Pipeline([("encode", encode), ("forest", RandomForestClassifier(30, random_state=0))])
    return pipeline.fit(frame, target.astype(int)), frame


@pytest.fixture(scope="module")
def typed_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("typed")
    pipeline, fraud = fraud_model()
    flags = flags_frame(200)
    linear = LinearRegression().fit(flags.astype(np.float64), flags["visits"] * 0.01 + flags["ratio"])
    scaled_example = pd.DataFrame({"x": [1.5, 2.0], "n": np.array([1, 2], dtype=np.int64)})
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", artifact_location="lockgate://models@main/t"))
        for name, model, frame in (("fraud", pipeline, fraud), ("flags", linear, flags)):
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=name,
                    input_example=frame.head(3),
                    serialization_format="cloudpickle",
                )
        with mlflow.start_run():
            signature = infer_signature(scaled_example, np.array([1.0]), params={"factor": 1.0})
            mlflow.pyfunc.log_model(
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                python_model=Scaled(),
                registered_model_name="scaled",
                signature=signature,
                input_example=(scaled_example, {"factor": 2.0}),
            )
    store_root, tracking = registry.store_root, registry.tracking_uri
    env = {"MLFLOW_TRACKING_URI": tracking, "LOCKGATE_STORE": str(store_root), "LOCKGATE_CACHE_DIR": str(workdir / "c")}
    references: dict[str, Server] = {}
    uris = ("models:/fraud/1", "models:/flags/1", "models:/scaled/1")
    # MLflow's references start first and come up while the gateway loads and converts.
    spawned = start_mlflow_models_serves(workdir, tracking, list(uris), {"LOCKGATE_STORE": str(store_root)}, wait=False)
    references.update({uri.split("/")[1]: server for uri, server in spawned.items()})
    try:
        gateway = start_lockgate(workdir, env, *uris, ready_path="/ready")
    except BaseException:
        for reference in references.values():
            stop_group(reference.proc)
        raise
    try:
        for name in ("fraud", "flags"):  # the same versions with ONNX off: the native typed path
            body = {"name": f"{name}-native", "model_uri": f"models:/{name}/1", "onnx": False}
            deployed = httpx.post(f"{gateway.url}/admin/endpoints", json=body, timeout=120)
            assert deployed.status_code == 200, deployed.text
        for name in ("fraud", "flags", "fraud-native", "flags-native", "scaled"):
            settle(gateway.url, name)
        wait_for_servers(spawned)
        yield {"gateway": gateway, "references": references, "fraud": fraud, "flags": flags}
    finally:
        gateway.stop()
        for reference in references.values():
            stop_group(reference.proc)


def settle(url: str, name: str, timeout: float = 180) -> dict[str, Any]:
    """The ONNX conversion runs in the background after /ready: wait until it has settled."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoint = httpx.get(f"{url}/endpoints/{name}").json()
        serving = endpoint["serving"]
        assert serving is not None, f"{name} is not serving: {endpoint['status']}: {endpoint['last_error']}"
        if not serving["onnx_pending"]:
            return dict(serving)
        time.sleep(0.2)
    raise AssertionError(f"{name}: the ONNX conversion did not settle in {timeout}s")


def split(columns: list[str], data: list[list[Any]], **extra: Any) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


def frame_split(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def records(frame: pd.DataFrame, key: str = "dataframe_records") -> bytes:
    return json.dumps({key: json.loads(frame.to_json(orient="records"))}).encode()


def columnar(frame: pd.DataFrame) -> bytes:
    split_form = json.loads(frame.to_json(orient="split", index=False))
    columns = {name: [row[i] for row in split_form["data"]] for i, name in enumerate(split_form["columns"])}
    return json.dumps({"inputs": columns}).encode()


FRAUD = fraud_frame(300, seed=7)
FRAUD_COLUMNS = list(FRAUD.columns)
ROW = json.loads(FRAUD.head(1).to_json(orient="split", index=False))["data"][0]  # amount, hour, merchant, country
FLAGS = flags_frame(50, seed=9)
FLAGS_COLUMNS = list(FLAGS.columns)
FLAG_ROW = json.loads(FLAGS.head(1).to_json(orient="split", index=False))["data"][0]


def with_value(row: list[Any], index: int, value: Any) -> list[Any]:
    changed = list(row)
    changed[index] = value
    return changed


# (case, model, body, content type, whether the typed lean path takes it)
CASES: list[tuple[str, str, bytes, str, bool]] = [
    ("split", "fraud", frame_split(FRAUD.head(5)), JSON, True),
    ("many rows", "fraud", frame_split(FRAUD), JSON, True),
    ("records", "fraud", records(FRAUD.head(4)), JSON, True),
    ("instances", "fraud", records(FRAUD.head(4), "instances"), JSON, True),
    ("inputs", "fraud", columnar(FRAUD.head(3)), JSON, True),
    ("reordered", "fraud", frame_split(FRAUD[list(reversed(FRAUD_COLUMNS))].head(3)), JSON, True),
    ("unknown category", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 2, "casino")]), JSON, True),
    ("integral amount", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 0, 120)]), JSON, True),
    ("float for a long", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 1, 3.5)]), JSON, False),
    ("whole float for a long", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 1, 3.0)]), JSON, False),
    ("string for a long", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 1, "3")]), JSON, False),
    ("long past int64", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 1, 2**63)]), JSON, False),
    ("number for a string", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 2, 7)]), JSON, False),
    ("null string", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 3, None)]), JSON, False),
    ("null number", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 0, None)]), JSON, False),
    ("boolean for a double", "fraud", split(FRAUD_COLUMNS, [with_value(ROW, 0, True)]), JSON, False),
    ("missing column", "fraud", split(FRAUD_COLUMNS[:3], [ROW[:3]]), JSON, False),
    ("extra column", "fraud", split([*FRAUD_COLUMNS, "note"], [[*ROW, "x"]]), JSON, False),
    ("params", "fraud", split(FRAUD_COLUMNS, [ROW], params={"k": 1}), JSON, False),
    ("csv", "fraud", FRAUD.head(3).to_csv(index=False).encode(), "text/csv", False),
    ("upper-case content type", "fraud", frame_split(FRAUD.head(2)), "APPLICATION/JSON", False),
    ("charset", "fraud", frame_split(FRAUD.head(2)), "application/json; charset=UTF-8", True),
    ("empty frame", "fraud", split(FRAUD_COLUMNS, []), JSON, False),
    ("flags split", "flags", frame_split(FLAGS), JSON, True),
    ("flags records", "flags", records(FLAGS.head(5)), JSON, True),
    ("flags instances", "flags", records(FLAGS.head(5), "instances"), JSON, True),
    ("integer past int32", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 1, 2**31)]), JSON, False),
    ("integer for a boolean", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 2, 1)]), JSON, False),
    ("string for a boolean", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 2, "true")]), JSON, False),
    ("float past float32", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 3, 1e39)]), JSON, False),
    ("int for a float", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 3, 3)]), JSON, True),
    ("boolean for a long", "flags", split(FLAGS_COLUMNS, [with_value(FLAG_ROW, 0, True)]), JSON, False),
    ("pyfunc", "scaled", split(["x", "n"], [[1.5, 1], [2.5, 2]]), JSON, False),
    ("pyfunc params", "scaled", split(["x", "n"], [[1.5, 1]], params={"factor": 3.0}), JSON, False),
    ("pyfunc bad params", "scaled", split(["x", "n"], [[1.5, 1]], params={"factor": "big"}), JSON, False),
    ("pyfunc unknown param", "scaled", split(["x", "n"], [[1.5, 1]], params={"other": 1}), JSON, False),
    ("pyfunc records", "scaled", json.dumps({"dataframe_records": [{"x": 1.0, "n": 2}]}).encode(), JSON, False),
]


def outcome(response: httpx.Response) -> tuple[int, Any]:
    if response.status_code == 200:
        return 200, response.content
    try:
        return response.status_code, response.json().get("error_code")
    except ValueError:
        return response.status_code, response.text


def lean_requests(url: str, name: str) -> int:
    batching = httpx.get(f"{url}/endpoints/{name}").json()["serving"]["batching"]
    return 0 if batching is None else int(batching["requests"])


def test_typed_models_take_the_typed_lean_path(typed_servers: dict[str, Any]) -> None:
    url = typed_servers["gateway"].url
    fraud = httpx.get(f"{url}/endpoints/fraud").json()["serving"]
    assert fraud["name"] == "onnx" and fraud["lean_parsing"] is True, fraud
    assert fraud["typed_columns"] == {"amount": "double", "hour": "long", "merchant": "string", "country": "string"}
    assert fraud["onnx_check"]["precision"] == "float64" and fraud["onnx_check"]["contract"] == "exact", fraud
    assert fraud["onnx_check"]["rows_checked"] >= 3
    flags = httpx.get(f"{url}/endpoints/flags").json()["serving"]
    assert flags["typed_columns"]["member"] == "boolean" and flags["lean_parsing"] is True, flags
    for name in ("fraud-native", "flags-native"):
        serving = httpx.get(f"{url}/endpoints/{name}").json()["serving"]
        assert serving["name"] == "sklearn" and serving["lean_parsing"] is True, serving
        assert serving["reason"].startswith("typed columns") and "turned off" in serving["reason"], serving
    scaled = httpx.get(f"{url}/endpoints/scaled").json()["serving"]
    assert scaled["name"] == "mlflow" and scaled["lean_parsing"] is False


# Each typed case on both typed paths (ONNX graph, native pipeline); the pyfunc has one path.
RUNS = [(*case, variant) for case in CASES for variant in (("", "-native") if case[1] != "scaled" else ("",))]


@pytest.mark.parametrize(
    ("case", "model", "body", "content_type", "lean", "variant"), RUNS, ids=[f"{r[0]}{r[5]}" for r in RUNS]
)
def test_same_answer_as_mlflow_models_serve(  # noqa: PLR0917 - one parameter per case field
    typed_servers: dict[str, Any], case: str, model: str, body: bytes, content_type: str, lean: bool, variant: str
) -> None:
    gateway: Server = typed_servers["gateway"]
    reference: Server = typed_servers["references"][model]
    endpoint = model + variant
    before = lean_requests(gateway.url, endpoint)
    headers = {"Content-Type": content_type}
    ours = httpx.post(f"{gateway.url}/endpoints/{endpoint}/invocations", content=body, headers=headers, timeout=60)
    theirs = httpx.post(f"{reference.url}/invocations", content=body, headers=headers, timeout=60)
    message = f"{case}: lockgate {ours.text[:300]!r} vs mlflow {theirs.text[:300]!r}"
    contract = httpx.get(f"{gateway.url}/endpoints/{endpoint}").json()["serving"]["onnx_check"]
    if ours.status_code == 200 == theirs.status_code and contract and contract["contract"] != "exact":
        # A float64 graph of a regressor: within its declared tolerance (a sum in another order).
        assert contract["contract"] == "float64~1e-12", contract
        ours_values, theirs_values = ours.json()["predictions"], theirs.json()["predictions"]
        assert np.allclose(ours_values, theirs_values, rtol=1e-12, atol=0), message
    else:
        assert outcome(ours) == outcome(theirs), message
    taken = lean_requests(gateway.url, endpoint) - before
    assert taken == (1 if lean else 0), f"{case}: the lean path took {taken} requests"


def test_batched_typed_rows_get_their_own_answers(typed_servers: dict[str, Any]) -> None:
    """Concurrent single-row requests merged into one DataFrame still get MLflow's bytes each."""
    import concurrent.futures

    gateway: Server = typed_servers["gateway"]
    reference: Server = typed_servers["references"]["fraud"]
    bodies = [frame_split(FRAUD.iloc[[i]]) for i in range(60)]
    expected = [httpx.post(f"{reference.url}/invocations", content=b, headers={"Content-Type": JSON}).content
                for b in bodies]  # fmt: skip
    before = lean_requests(gateway.url, "fraud")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{gateway.url}/endpoints/fraud/invocations", content=b,
                                                      headers={"Content-Type": JSON}).content, bodies))  # fmt: skip
    assert answers == expected
    assert lean_requests(gateway.url, "fraud") - before == 60, "every request took the typed lean path"
