"""The Open Inference Protocol over REST and gRPC, driven by a client lockgate did not write:
``tritonclient.http`` and ``tritonclient.grpc``'s ``InferenceServerClient`` against a real
``lockgate serve --grpc-port`` (uvicorn, and a grpc.aio server in the same process).

Every V2 answer must equal the ``/invocations`` answer for the same rows, with the same lineage;
every bad request must get a clear error and leave the server serving.
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
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import Schema, TensorSpec
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from tests.pyfunc_models import PROJECTION, Projection
from tests.registry_helpers import PIP_REQUIREMENTS, registry_at
from tests.servers import Server, free_port, start_lockgate
from tests.test_gateway_parity_typed import Scaled, fraud_frame, fraud_model, settle

pytestmark = pytest.mark.slow
IRIS = load_iris(as_frame=True)
IRIS_X = IRIS.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("v2")
    pipeline, fraud = fraud_model()
    iris = LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS.target)
    scaled_example = pd.DataFrame({"x": [1.5, 2.0], "n": np.array([1, 2], dtype=np.int64)})
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("v", artifact_location="lockgate://models@main/v"))
        iris_again = LogisticRegression(max_iter=1000, C=0.5).fit(IRIS_X, IRIS.target)
        for name, model, frame in (("iris", iris, IRIS_X), ("fraud", pipeline, fraud), ("iris", iris_again, IRIS_X)):
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
        with mlflow.start_run():
            tensors = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 4))]),
                                     outputs=Schema([TensorSpec(np.dtype("float64"), (-1, 2))]))  # fmt: skip
            mlflow.pyfunc.log_model(
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                python_model=Projection(),
                registered_model_name="tensor",
                signature=tensors,
                input_example=np.ones((2, 4)),
            )
    env = {"MLFLOW_TRACKING_URI": registry.tracking_uri, "LOCKGATE_STORE": str(registry.store_root),
           "LOCKGATE_CACHE_DIR": str(workdir / "c")}  # fmt: skip
    grpc_port = free_port()
    uris = ("models:/iris/1", "models:/fraud/1", "models:/scaled/1", "models:/tensor/1")
    server = start_lockgate(workdir, env, *uris, "--grpc-port", str(grpc_port), ready_path="/ready")
    server.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    try:
        for name in ("iris", "fraud", "scaled", "tensor"):
            settle(server.url, name)
        server.classifiers = {"iris": iris, "fraud": pipeline}  # type: ignore[attr-defined]
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(gateway: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(gateway.url.removeprefix("http://"))


def invocations(gateway: Server, name: str, frame: pd.DataFrame, **extra: Any) -> httpx.Response:
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False, double_precision=15)), **extra}
    answer = httpx.post(f"{gateway.url}/endpoints/{name}/invocations", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def column_inputs(frame: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for column in frame.columns:
        values = frame[[column]].to_numpy()
        if values.dtype.kind == "f":
            datatype, values = "FP64", values.astype(np.float64)
        elif values.dtype.kind in "iu":
            datatype, values = "INT64", values.astype(np.int64)
        else:
            datatype, values = "BYTES", values.astype(object)
        tensor = triton.InferInput(column, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata(client: triton.InferenceServerClient, gateway: Server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
    assert not client.is_model_ready("iris", "7")
    metadata = client.get_model_metadata("fraud")
    assert metadata["versions"] == ["1"] and metadata["platform"] == "mlflow"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "amount": "FP64", "hour": "INT64", "merchant": "BYTES", "country": "BYTES"
    }  # fmt: skip
    assert len(metadata["parameters"]["weights_commit"]) == 64
    # The labels' datatype comes from the signature (int64); a classifier also offers its probabilities.
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]},
    ]
    tensor = client.get_model_metadata("tensor")
    assert tensor["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert tensor["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1, 2]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_iris_as_one_matrix_and_as_columns_equals_invocations(
    client: triton.InferenceServerClient, gateway: Server, binary: bool
) -> None:
    rows = IRIS_X.iloc[[0, 50, 100, 149]]
    expected = invocations(gateway, "iris", rows)
    matrix = triton.InferInput("input", [len(rows), 4], "FP64")
    matrix.set_data_from_numpy(rows.to_numpy(np.float64), binary_data=binary)
    output = triton.InferRequestedOutput("predict", binary_data=binary)
    for inputs in ([matrix], column_inputs(rows, binary)):
        result = client.infer("iris", inputs, outputs=[output])
        assert result.as_numpy("predict").tolist() == expected.json()["predictions"]
        response = result.get_response()
        assert response["model_version"] == "1"
        assert response["parameters"]["weights_commit"] == expected.headers["X-Lockgate-Weights-Commit"]


def test_a_request_past_the_inline_limit_is_read_off_the_loop_and_answers_the_same(
    client: triton.InferenceServerClient, grpc_client: triton_grpc.InferenceServerClient, gateway: Server
) -> None:
    """Bodies past LEAN_INLINE_BYTES are read in a worker thread (REST and gRPC), not on the loop."""
    from lockgate.gateway.serving.request_body import LEAN_INLINE_BYTES

    rows = IRIS_X.sample(n=3000, replace=True, random_state=3).reset_index(drop=True)
    expected = invocations(gateway, "iris", rows).json()["predictions"]
    output = triton.InferRequestedOutput("predict", binary_data=False)
    assert len(rows) * 4 * 8 > LEAN_INLINE_BYTES  # both bodies are past the limit
    result = client.infer("iris", column_inputs(rows, binary=False), outputs=[output])
    assert result.as_numpy("predict").tolist() == expected
    matrix = triton_grpc.InferInput("input", [len(rows), 4], "FP64")
    matrix.set_data_from_numpy(rows.to_numpy(np.float64))
    assert grpc_client.infer("iris", [matrix]).as_numpy("predict").tolist() == expected


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_typed_pipeline_with_bytes_int64_and_fp64_inputs(
    client: triton.InferenceServerClient, gateway: Server, binary: bool
) -> None:
    rows = fraud_frame(40, seed=3)
    expected = invocations(gateway, "fraud", rows).json()["predictions"]
    before = httpx.get(f"{gateway.url}/endpoints/fraud").json()["serving"]["batching"]["requests"]
    result = client.infer("fraud", column_inputs(rows, binary))  # no outputs named: binary by default
    assert result.as_numpy("predict").tolist() == expected
    after = httpx.get(f"{gateway.url}/endpoints/fraud").json()["serving"]["batching"]["requests"]
    assert after - before == 1, "the V2 request went through the same lean path and batcher"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["iris", "fraud"])
def test_label_and_probability_outputs(
    client: triton.InferenceServerClient, gateway: Server, binary: bool, model: str
) -> None:
    rows = IRIS_X.iloc[[0, 60, 120]] if model == "iris" else fraud_frame(12, seed=5)
    expected = invocations(gateway, model, rows).json()["predictions"]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("predict", "predict_proba")]
    result = client.infer(model, column_inputs(rows, binary), outputs=outputs)
    assert result.as_numpy("predict").tolist() == expected, "the labels are /invocations' answer"
    probabilities = result.as_numpy("predict_proba")
    estimator = gateway.classifiers[model]  # type: ignore[attr-defined]
    assert np.array_equal(probabilities, estimator.predict_proba(rows)), "the estimator's own probabilities"
    assert estimator.classes_[probabilities.argmax(axis=1)].tolist() == expected
    alone = client.infer(model, column_inputs(rows, binary), outputs=[outputs[1]])
    assert [o["name"] for o in alone.get_response()["outputs"]] == ["predict_proba"]
    with pytest.raises(InferenceServerException, match=r"unknown outputs \['labels'\].*'predict', 'predict_proba'"):
        client.infer(model, column_inputs(rows, binary), outputs=[triton.InferRequestedOutput("labels")])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_tensor_model_takes_its_tensor_as_it_is(
    client: triton.InferenceServerClient, gateway: Server, binary: bool
) -> None:
    batch = np.random.default_rng(6).normal(size=(5, 4))
    answer = httpx.post(f"{gateway.url}/endpoints/tensor/invocations", json={"inputs": batch.tolist()}, timeout=60)
    assert answer.status_code == 200, answer.text
    tensor = triton.InferInput("x", [5, 4], "FP64")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    result = client.infer("tensor", [tensor], outputs=[triton.InferRequestedOutput("predict", binary_data=binary)])
    assert result.as_numpy("predict").shape == (5, 2)
    assert result.as_numpy("predict").tolist() == answer.json()["predictions"] == (batch @ PROJECTION).tolist()
    assert result.get_response()["parameters"]["weights_commit"] == answer.headers["X-Lockgate-Weights-Commit"]
    narrow = triton.InferInput("x", [5, 3], "FP64")
    narrow.set_data_from_numpy(batch[:, :3], binary_data=binary)
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("tensor", [narrow])
    other = triton.InferInput("y", [5, 4], "FP64")
    other.set_data_from_numpy(batch, binary_data=binary)
    with pytest.raises(InferenceServerException, match="one tensor input, not 2"):
        client.infer("tensor", [tensor, other])
    assert client.infer("tensor", [tensor]).as_numpy("predict").shape == (5, 2), "still serving"


def test_pyfunc_params_pass_through(client: triton.InferenceServerClient, gateway: Server) -> None:
    rows = pd.DataFrame({"x": [1.5, 2.5], "n": np.array([1, 2], dtype=np.int64)})
    expected = invocations(gateway, "scaled", rows, params={"factor": 3.0}).json()["predictions"]
    result = client.infer("scaled", column_inputs(rows, True), parameters={"factor": 3.0})
    assert result.as_numpy("predict").tolist() == expected


def test_versioned_infer_answers_only_for_the_serving_version(
    client: triton.InferenceServerClient, gateway: Server
) -> None:
    rows = IRIS_X.head(2)
    assert client.infer("iris", column_inputs(rows, True), model_version="1").as_numpy("predict").shape == (2,)
    with pytest.raises(InferenceServerException, match="version '2' of model 'iris' is not serving"):
        client.infer("iris", column_inputs(rows, True), model_version="2")


def test_bad_requests_are_named_and_the_server_keeps_serving(
    client: triton.InferenceServerClient, gateway: Server
) -> None:
    rows = fraud_frame(3, seed=4)
    good = column_inputs(rows, True)
    with pytest.raises(InferenceServerException, match="no endpoint 'nope'"):
        client.infer("nope", good)
    wrong_type = column_inputs(rows, True)
    wrong_type[2] = triton.InferInput("merchant", [3, 1], "FP64")
    wrong_type[2].set_data_from_numpy(np.ones((3, 1)), binary_data=True)
    with pytest.raises(InferenceServerException, match="merchant"):
        client.infer("fraud", wrong_type)
    with pytest.raises(InferenceServerException, match=r"missing inputs \['country'\]"):
        client.infer("fraud", good[:3])
    wide = triton.InferInput("amount", [3, 2], "FP64")
    wide.set_data_from_numpy(np.ones((3, 2)), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"shape \[N\] or \[N, 1\]"):
        client.infer("fraud", [wide, *good[1:]])
    bad_matrix = triton.InferInput("input", [2, 3], "FP64")
    bad_matrix.set_data_from_numpy(np.ones((2, 3)), binary_data=True)
    with pytest.raises(InferenceServerException, match="has 3 columns; the signature has 4"):
        client.infer("iris", [bad_matrix])
    for body, needle in (
        (b"{not json", "not valid JSON"),
        (b'{"inputs": []}', "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP99", "data": [1]}]}', "unknown datatype"),
        (b'{"inputs": [{"name": "amount", "shape": [2], "datatype": "FP64", "data": [1]}]}', "needs 2 elements"),
    ):
        answer = httpx.post(f"{gateway.url}/v2/models/fraud/infer", content=body)
        assert answer.status_code == 400 and needle in answer.json()["error"], (body, answer.text)
    assert client.infer("fraud", good).as_numpy("predict").shape == (3,), "still serving after bad requests"


# -- gRPC ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_client(gateway: Server) -> Iterator[triton_grpc.InferenceServerClient]:
    client = triton_grpc.InferenceServerClient(gateway.grpc_address)  # type: ignore[attr-defined]
    yield client
    client.close()


def grpc_inputs(frame: pd.DataFrame) -> list[triton_grpc.InferInput]:
    inputs = []
    for column in frame.columns:
        values = frame[[column]].to_numpy()
        kind = values.dtype.kind
        datatype = "FP64" if kind == "f" else "INT64" if kind in "iu" else "BYTES"
        values = values.astype(np.float64 if kind == "f" else np.int64 if kind in "iu" else object)
        tensor = triton_grpc.InferInput(column, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def test_grpc_health_and_metadata(grpc_client: triton_grpc.InferenceServerClient) -> None:
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert "binary_tensor_data" in grpc_client.get_server_metadata(as_json=True)["extensions"]
    assert grpc_client.is_model_ready("fraud") and grpc_client.is_model_ready("fraud", "1")
    assert not grpc_client.is_model_ready("fraud", "9")
    metadata = grpc_client.get_model_metadata("fraud", as_json=True)
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "amount": "FP64", "hour": "INT64", "merchant": "BYTES", "country": "BYTES"
    }  # fmt: skip


def test_grpc_infer_equals_invocations_with_lineage(
    grpc_client: triton_grpc.InferenceServerClient, gateway: Server
) -> None:
    rows = fraud_frame(25, seed=5)
    expected = invocations(gateway, "fraud", rows)
    before = httpx.get(f"{gateway.url}/endpoints/fraud").json()["serving"]["batching"]["requests"]
    result = grpc_client.infer("fraud", grpc_inputs(rows))
    assert result.as_numpy("predict").tolist() == expected.json()["predictions"]
    after = httpx.get(f"{gateway.url}/endpoints/fraud").json()["serving"]["batching"]["requests"]
    assert after - before == 1, "gRPC went through the same lean path and batcher"
    response = result.get_response(as_json=True)
    assert response["parameters"]["weights_commit"]["string_param"] == expected.headers["X-Lockgate-Weights-Commit"]
    iris_rows = IRIS_X.iloc[[0, 75, 149]]
    matrix = triton_grpc.InferInput("input", [3, 4], "FP64")
    matrix.set_data_from_numpy(iris_rows.to_numpy(np.float64))
    iris = grpc_client.infer("iris", [matrix], model_version="1")
    assert iris.as_numpy("predict").tolist() == invocations(gateway, "iris", iris_rows).json()["predictions"]
    scaled_rows = pd.DataFrame({"x": [0.5], "n": np.array([4], dtype=np.int64)})
    scaled = grpc_client.infer("scaled", grpc_inputs(scaled_rows), parameters={"factor": 2.0})
    assert (
        scaled.as_numpy("predict").tolist()
        == invocations(gateway, "scaled", scaled_rows, params={"factor": 2.0}).json()["predictions"]
    )
    both = [triton_grpc.InferRequestedOutput("predict"), triton_grpc.InferRequestedOutput("predict_proba")]
    labelled = grpc_client.infer("fraud", grpc_inputs(rows), outputs=both)
    assert labelled.as_numpy("predict").tolist() == expected.json()["predictions"]
    estimator = gateway.classifiers["fraud"]  # type: ignore[attr-defined]
    assert np.array_equal(labelled.as_numpy("predict_proba"), estimator.predict_proba(rows))
    batch = np.random.default_rng(8).normal(size=(3, 4))
    tensor = triton_grpc.InferInput("x", [3, 4], "FP64")
    tensor.set_data_from_numpy(batch)
    assert grpc_client.infer("tensor", [tensor]).as_numpy("predict").tolist() == (batch @ PROJECTION).tolist()


def test_grpc_typed_contents_read_as_raw_contents_do(gateway: Server) -> None:
    """A ModelInferRequest with typed ``contents`` (what generated stubs in other languages send;
    tritonclient sends raw bytes) gets the answer /invocations gives, and its malformed forms are
    named as the raw form's are. The request is built with tritonclient's own generated protos
    and stub, so nothing here is lockgate's code."""
    import grpc
    import tritonclient.grpc.service_pb2 as pb
    import tritonclient.grpc.service_pb2_grpc as pb_grpc

    rows = fraud_frame(4, seed=9)

    def request(amount: list[float], datatype: str = "FP64", count: int = 4) -> object:
        message = pb.ModelInferRequest(model_name="fraud")
        field = "fp32_contents" if datatype == "FP32" else "fp64_contents"
        getattr(message.inputs.add(name="amount", datatype=datatype, shape=[count]).contents, field).extend(amount)
        message.inputs.add(name="hour", datatype="INT64", shape=[4]).contents.int64_contents.extend(
            rows["hour"].tolist()
        )
        for column in ("merchant", "country"):
            tensor = message.inputs.add(name=column, datatype="BYTES", shape=[4])
            tensor.contents.bytes_contents.extend(v.encode() for v in rows[column])
        return message

    with grpc.insecure_channel(gateway.grpc_address) as channel:  # type: ignore[attr-defined]
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(request(rows["amount"].tolist()))
        (output,) = answer.outputs
        labels = list(output.contents.int64_contents) or np.frombuffer(answer.raw_output_contents[0], "<i8").tolist()
        assert labels == invocations(gateway, "fraud", rows).json()["predictions"]
        for bad, needle in (
            (request([1.0, 2.0, 3.0]), "shape needs 4 elements"),
            (request([float("inf")] * 4, datatype="FP32"), "outside FP32's range"),
            (request([1.0] * 4, count=-4), "non-negative"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(bad)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert needle in str(caught.value.details())


def test_grpc_bad_requests_are_named_and_the_server_keeps_serving(
    grpc_client: triton_grpc.InferenceServerClient,
) -> None:
    rows = fraud_frame(2, seed=6)
    good = grpc_inputs(rows)
    for call, needle in (
        (lambda: grpc_client.infer("nope", good), "no endpoint 'nope'"),
        (lambda: grpc_client.infer("fraud", good, model_version="4"), "version '4' of model 'fraud' is not serving"),
        (lambda: grpc_client.infer("fraud", good[:2]), "missing inputs"),
    ):
        with pytest.raises(InferenceServerException, match=needle):
            call()
    wrong = grpc_inputs(rows)
    wrong[1] = triton_grpc.InferInput("hour", [2, 1], "FP32")
    wrong[1].set_data_from_numpy(np.ones((2, 1), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="hour"):
        grpc_client.infer("fraud", wrong)
    assert grpc_client.infer("fraud", good).as_numpy("predict").shape == (2,)


def test_a_swap_under_v2_load_fails_nothing(
    gateway: Server, client: triton.InferenceServerClient, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    """REST and gRPC clients hammer iris while it swaps 1 -> 2 -> 1: no request fails, and
    every answer names a version that was live while it ran."""
    import threading
    import time

    rows = IRIS_X.head(3).to_numpy(np.float64)
    stop = threading.Event()
    outcomes: list[tuple[str, str]] = []  # (protocol, version or error)
    lock = threading.Lock()

    def rest_loop() -> None:
        local = triton.InferenceServerClient(gateway.url.removeprefix("http://"))
        matrix = triton.InferInput("input", [3, 4], "FP64")
        matrix.set_data_from_numpy(rows)
        while not stop.is_set():
            try:
                outcome = local.infer("iris", [matrix]).get_response()["model_version"]
            except Exception as exc:
                outcome = f"error: {exc}"
            with lock:
                outcomes.append(("rest", outcome))

    def grpc_loop() -> None:
        local = triton_grpc.InferenceServerClient(gateway.grpc_address)  # type: ignore[attr-defined]
        matrix = triton_grpc.InferInput("input", [3, 4], "FP64")
        matrix.set_data_from_numpy(rows)
        while not stop.is_set():
            try:
                outcome = local.infer("iris", [matrix]).get_response().model_version
            except Exception as exc:
                outcome = f"error: {exc}"
            with lock:
                outcomes.append(("grpc", outcome))
        local.close()

    threads = [threading.Thread(target=loop) for loop in (rest_loop, rest_loop, grpc_loop, grpc_loop)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        for target in ("2", "1"):
            deployed = httpx.post(
                f"{gateway.url}/admin/endpoints", json={"name": "iris", "model_uri": f"models:/iris/{target}"},
                timeout=120,
            )  # fmt: skip
            assert deployed.status_code == 200, deployed.text
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    errors = [o for o in outcomes if o[1].startswith("error")]
    assert not errors, f"{len(errors)} of {len(outcomes)} V2 requests failed: {errors[:3]}"
    assert {p for p, _ in outcomes} == {"rest", "grpc"} and len(outcomes) > 100
    assert {v for _, v in outcomes} == {"1", "2"}, "both versions answered across the swaps"


def test_metrics_carry_the_protocol(gateway: Server, grpc_client: triton_grpc.InferenceServerClient) -> None:
    rows = fraud_frame(2, seed=8)
    invocations(gateway, "fraud", rows)
    triton.InferenceServerClient(gateway.url.removeprefix("http://")).infer("fraud", column_inputs(rows, False))
    grpc_client.infer("fraud", grpc_inputs(rows))
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text)}
    protocols = {
        s.labels["protocol"]
        for s in families["lockgate_requests"].samples
        if s.name == "lockgate_requests_total" and s.labels["endpoint"] == "fraud" and s.labels["status"] == "200"
    }
    assert protocols == {"mlflow", "v2-rest", "v2-grpc"}


def metadata_inputs(name: str, module: Any) -> list[Any]:
    """Three rows for model ``name``, as ``module``'s (tritonclient.http or .grpc) InferInputs."""
    if name == "tensor":
        tensor = module.InferInput("x", [3, 4], "FP64")
        tensor.set_data_from_numpy(np.ones((3, 4)))
        return [tensor]
    frames = {"iris": IRIS_X.head(3), "fraud": fraud_frame(3, seed=4),
              "scaled": pd.DataFrame({"x": [1.5, 2.0, 3.0], "n": np.array([1, 2, 3], dtype=np.int64)})}  # fmt: skip
    return grpc_inputs(frames[name]) if module is triton_grpc else column_inputs(frames[name], binary=False)


@pytest.mark.parametrize("name", ["iris", "fraud", "scaled", "tensor"])
def test_a_client_that_requests_the_declared_outputs_gets_them(
    client: triton.InferenceServerClient, grpc_client: triton_grpc.InferenceServerClient, name: str
) -> None:
    """As a tritonclient user writes it: read the model's metadata, ask for every output it
    declares, over REST and gRPC. The metadata lists every output infer can give, by infer's names."""
    declared = [o["name"] for o in client.get_model_metadata(name)["outputs"]]
    assert declared == [o["name"] for o in grpc_client.get_model_metadata(name, as_json=True)["outputs"]]
    rest = client.infer(name, metadata_inputs(name, triton),
                        outputs=[triton.InferRequestedOutput(o) for o in declared])  # fmt: skip
    assert [o["name"] for o in rest.get_response()["outputs"]] == declared
    over_grpc = grpc_client.infer(name, metadata_inputs(name, triton_grpc),
                                  outputs=[triton_grpc.InferRequestedOutput(o) for o in declared])  # fmt: skip
    assert [o["name"] for o in over_grpc.get_response(as_json=True)["outputs"]] == declared
    for output in declared:
        assert rest.as_numpy(output).shape[0] == 3 and over_grpc.as_numpy(output).shape[0] == 3
    if name in ("iris", "fraud"):  # classifiers: the labels and their probabilities
        assert declared == ["predict", "predict_proba"]
