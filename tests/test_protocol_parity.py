"""Whatever one protocol observes, every protocol observes. The same rows go through MLflow's
``/invocations``, V2 REST and V2 gRPC against a real ``lockgate serve``, for a lean-path model
(an sklearn LogisticRegression, batched) and a pyfunc model (MLflow's own predict), each trained
on a dataset commit in the store so serving skew is tracked. Each protocol must give the same
predictions, the same lineage and role (headers, or gRPC trailing metadata), the same rows
counted for skew, and the same serving-metric increments.

(V2's pyfunc path did not count its rows for skew: 0 rows through V2 against 3 through MLflow's
path for the same rows.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, registry_at, weights
from tests.servers import Server, free_port, start_lockgate

pytestmark = pytest.mark.slow

COLUMNS = ["a", "b", "c"]
ROWS = pd.DataFrame({"a": [0.5, -1.0, 2.0], "b": [1.0, 0.25, -0.5], "c": [-2.0, 0.0, 1.5]})
LINEAGE = ("x-lockgate-model-version", "x-lockgate-weights-commit", "x-lockgate-dataset-commit", "x-lockgate-role")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("parity")
    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.standard_normal((300, 3)), columns=COLUMNS)
    train["label"] = (train["a"] + train["b"] > 0).astype(int)
    with registry_at(workdir) as registry:
        store = Store.open(str(registry.store_root), create=True)
        store.commit_files("datasets", "main", [("parity/train.csv", train.to_csv(index=False).encode())])
        dataset = mlflow.data.from_pandas(train, source="lockgate://datasets@main/parity/train.csv")
        registry.log_weights_model("pyfunc", weights(1, rows=8, cols=2), dataset=dataset)
        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.log_input(dataset, context="training")
            mlflow.sklearn.log_model(
                LogisticRegression().fit(train[COLUMNS], train["label"]),
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name="lean",
                input_example=train[COLUMNS].head(3),
                serialization_format="cloudpickle",
            )
    grpc_port = free_port()
    server = start_lockgate(workdir, registry.gateway_env(), "models:/lean/1", "models:/pyfunc/1",
                            "--grpc-port", str(grpc_port), ready_path="/ready")  # fmt: skip
    server.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    try:
        for name, path in (("lean", ("onnx", "sklearn")), ("pyfunc", ("mlflow",))):
            state = httpx.get(f"{server.url}/endpoints/{name}", timeout=30).json()
            assert state["skew"]["tracked"], state
            assert state["serving_path"] in path, state["serving"]
        yield server
    finally:
        server.stop()


def counters(server: Server, name: str) -> dict[str, float]:
    """The series a prediction moves, for endpoint ``name``: skew rows, and per protocol, requests."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("endpoint") != name:
                continue
            if sample.name == "lockgate_skew_window_rows":
                found["skew_rows"] = sample.value
            elif sample.name == "lockgate_rows_predicted_total":
                found["rows_predicted"] = sample.value
            elif sample.name == "lockgate_requests_total" and labels["status"] == "200":
                found[f"requests:{labels['protocol']}:{labels['role']}"] = sample.value
    return found


def via_invocations(server: Server, name: str) -> tuple[list[Any], dict[str, str]]:
    body = {"dataframe_split": json.loads(ROWS.to_json(orient="split", index=False))}
    answer = httpx.post(f"{server.url}/endpoints/{name}/invocations", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"], {k: answer.headers[k] for k in LINEAGE}


def via_v2_rest(server: Server, name: str) -> tuple[list[Any], dict[str, str]]:
    inputs = [{"name": c, "datatype": "FP64", "shape": [len(ROWS)], "data": ROWS[c].tolist()} for c in COLUMNS]
    answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=60)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    return _rows(np.asarray(output["data"]).reshape(output["shape"])), {k: answer.headers[k] for k in LINEAGE}


def via_v2_grpc(server: Server, name: str) -> tuple[list[Any], dict[str, str]]:
    """Through tritonclient's own generated stub (nothing of lockgate's), reading trailing metadata."""
    message = pb.ModelInferRequest(model_name=name)
    for column in COLUMNS:
        message.inputs.add(name=column, datatype="FP64", shape=[len(ROWS)]).contents.fp64_contents.extend(
            ROWS[column].tolist()
        )
    with grpc.insecure_channel(server.grpc_address) as channel:  # type: ignore[attr-defined]
        response, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(message, timeout=60)
        metadata = dict(call.trailing_metadata())
    (output,) = response.outputs
    dtype = {"INT64": "<i8", "FP64": "<f8"}[output.datatype]
    values = np.frombuffer(response.raw_output_contents[0], dtype).reshape(list(output.shape))
    return _rows(values), {k: metadata[k] for k in LINEAGE}


def _rows(values: np.ndarray) -> list[Any]:
    """V2's [N, 1] of a one-column prediction is /invocations' [[v], ...], as MLflow writes it."""
    return values.tolist()


PROTOCOLS = {"mlflow": via_invocations, "v2-rest": via_v2_rest, "v2-grpc": via_v2_grpc}


@pytest.mark.parametrize("name", ["lean", "pyfunc"])
def test_every_protocol_observes_what_the_others_do(gateway: Server, name: str) -> None:
    answers: dict[str, tuple[list[Any], dict[str, str]]] = {}
    moved: dict[str, dict[str, float]] = {}
    for protocol, send in PROTOCOLS.items():
        before = counters(gateway, name)
        answers[protocol] = send(gateway, name)
        after = counters(gateway, name)
        moved[protocol] = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if after.get(k) != before.get(k)}
    predictions = {protocol: answer[0] for protocol, answer in answers.items()}
    assert predictions["v2-rest"] == predictions["mlflow"] == predictions["v2-grpc"], predictions
    lineage = {protocol: answer[1] for protocol, answer in answers.items()}
    assert lineage["v2-rest"] == lineage["mlflow"] == lineage["v2-grpc"], lineage
    assert lineage["mlflow"]["x-lockgate-role"] == "primary"
    for protocol, delta in moved.items():
        assert delta == {"skew_rows": 3.0, "rows_predicted": 3.0, f"requests:{protocol}:primary": 1.0}, (
            protocol,
            moved,
        )


UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def id_via_invocations(server: Server, name: str, request_id: str | None) -> set[str]:
    body = {"dataframe_split": json.loads(ROWS.to_json(orient="split", index=False))}
    headers = {"X-Request-Id": request_id} if request_id is not None else {}
    answer = httpx.post(f"{server.url}/endpoints/{name}/invocations", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return {answer.headers["x-lockgate-request-id"]}


def id_via_v2_rest(server: Server, name: str, request_id: str | None) -> set[str]:
    inputs = [{"name": c, "datatype": "FP64", "shape": [len(ROWS)], "data": ROWS[c].tolist()} for c in COLUMNS]
    body: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        body["id"] = request_id
    answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return {answer.headers["x-lockgate-request-id"], answer.json()["id"]}


def id_via_v2_grpc(server: Server, name: str, request_id: str | None) -> set[str]:
    message = pb.ModelInferRequest(model_name=name, id=request_id or "")
    for column in COLUMNS:
        message.inputs.add(name=column, datatype="FP64", shape=[len(ROWS)]).contents.fp64_contents.extend(
            ROWS[column].tolist()
        )
    with grpc.insecure_channel(server.grpc_address) as channel:  # type: ignore[attr-defined]
        response, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(message, timeout=60)
        metadata = dict(call.trailing_metadata())
    return {metadata["x-lockgate-request-id"], response.id}


ID_PROTOCOLS = {"mlflow": id_via_invocations, "v2-rest": id_via_v2_rest, "v2-grpc": id_via_v2_grpc}


@pytest.mark.parametrize("protocol", list(ID_PROTOCOLS))
@pytest.mark.parametrize("name", ["lean", "pyfunc"])
def test_every_answer_carries_a_request_id_the_client_gave_or_a_new_time_ordered_one(
    gateway: Server, name: str, protocol: str
) -> None:
    send = ID_PROTOCOLS[protocol]
    for kept in ("order-42", "0190b7e2-1c0a-7abc-8def-0123456789ab", "a" * 128, "trace:span.1_x-2"):
        assert send(gateway, name, kept) == {kept}
    # Not the rule (too long, control characters, spaces, not ASCII): a new id instead, never an echo.
    for refused in ("a" * 129, "a\tb", "two words", "caf\u00e9", "x" * 100_000):
        if protocol == "mlflow" and not refused.isascii():
            continue  # not a header value httpx can send
        if protocol == "mlflow" and ("\t" in refused or len(refused) > 1000):
            continue  # a header: tabs are folded whitespace; 100 kB is past the header bound (431)
        (given,) = send(gateway, name, refused)
        assert UUID7.fullmatch(given), given
    first, second = (send(gateway, name, None).pop() for _ in range(2))
    assert UUID7.fullmatch(first) and UUID7.fullmatch(second) and first != second
    assert first[:13] <= second[:13]  # the millisecond time leads the id: later ids sort after
