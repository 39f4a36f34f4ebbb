"""Hostile V2 bodies, gRPC messages and request heads against a real ``lockgate serve`` (uvicorn
with the bounded httptools protocol, and the grpc.aio service) on a real sqlite registry.

Each case is the one the security review found: the hostile request gets its 4xx, a valid
request sent beside it is answered, and the work is bounded by something counted rather than
timed: the general V2 readers' steps (``lockgate_v2_decode_steps_total``) against the bytes
sent, and the server's resident memory against a 64 MiB header.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import mlflow
import pytest
import tritonclient.grpc.service_pb2 as pb
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.registry_helpers import PIP_REQUIREMENTS, Registry, registry_at
from tests.servers import Server, free_port, start_lockgate

pytestmark = pytest.mark.slow

IRIS = load_iris(as_frame=True)
IRIS_X = IRIS.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
COLUMNS = list(IRIS_X.columns)
INFER = "/v2/models/iris/infer"
ROW = [5.1, 3.5, 1.4, 0.2]
VALID = json.dumps(
    {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [v]} for c, v in zip(COLUMNS, ROW, strict=True)]}
).encode()
BIG_INT = 2**63 - 1


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_iris_gateway(tmp_path_factory.mktemp("hostile"))
    yield server
    server.stop()


def start_iris_gateway(workdir: Path) -> Server:
    """``lockgate serve`` of an iris LogisticRegression (the lean path), with V2 over gRPC too."""
    registry = register_iris(workdir)
    grpc_port = free_port()
    server = start_lockgate(workdir, registry.gateway_env(), "models:/iris/1", "--grpc-port", str(grpc_port),
                            ready_path="/ready")  # fmt: skip
    server.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    return server


def register_iris(workdir: Path) -> Registry:
    """A sqlite registry and store under ``workdir`` with version 1 of ``iris``."""
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS.target),
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name="iris",
                input_example=IRIS_X.head(3),
                serialization_format="cloudpickle",
            )
    return registry


def decode_steps(server: Server) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("lockgate_v2_decode_steps_total "):
            return float(line.split()[1])
    raise AssertionError("lockgate_v2_decode_steps_total is not exported")


def rss_bytes(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def valid_answer(server: Server) -> None:
    answer = httpx.post(server.url + INFER, content=VALID, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [0]


def nested_body(dimensions: int = 1001, depth: int = 1000, width: int = 5, padding: int = 0) -> bytes:
    """The review's body: 1,001 dimensions, and data nested 1,000 deep with ``width`` numbers at
    every level (about 30 KB, read on the loop): the pass-per-level flatten copied every number
    seen so far on each pass, ~2.5 million copies. ``padding`` bytes of request id take it past
    the inline limit, to the decode pool."""
    shape = json.dumps([1] * dimensions)
    level = "1.0, " * width
    data = ("[" + level) * depth + "1.0" + "]" * depth
    return (
        f'{{"id": "{"p" * padding}", "inputs": [{{"name": "{COLUMNS[0]}", "datatype": "FP64", '
        f'"shape": {shape}, "data": {data}}}]}}'
    ).encode()


def huge_shape_body(dimensions: int = 35_000) -> bytes:
    tensor = {"name": COLUMNS[0], "datatype": "FP64", "shape": [BIG_INT] * dimensions, "data": [1.0]}
    return json.dumps({"inputs": [tensor]}).encode()


def post(server: Server, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(server.url + INFER, content=body, headers=headers, timeout=120)


def in_threads(count: int, work: object) -> list[BaseException]:
    """Run ``work`` in ``count`` threads; the exceptions they raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()  # type: ignore[operator]
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


# -- 1. deep nesting: linear work, on the loop or off it --------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (nested_body(), "at most 32 dimensions"),
        (nested_body(dimensions=32, depth=1000), "'data' has more"),  # more numbers than the shape holds
        (nested_body(dimensions=32, depth=1000, width=0), "nested deeper than its shape"),
        (nested_body(dimensions=32, depth=1000, width=0, padding=40_000), "nested deeper than its shape"),  # the pool
        # Within the rank, more elements than the shape declares, nested: stops at the first extra.
        (
            json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [[1.0] * 2] * 5_000}]}
            ).encode(),
            "shape needs 4 elements",
        ),
    ],
)
def test_nested_data_costs_work_linear_in_its_size(gateway: Server, body: bytes, needle: str) -> None:
    before = decode_steps(gateway)
    answer = post(gateway, body)
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["error"]
    steps = decode_steps(gateway) - before
    # The pass-per-level flatten copied ~width * depth**2 / 2 elements (2.5 million for the review's body).
    assert steps <= len(body), f"{steps:,.0f} steps for a {len(body):,}-byte body"
    valid_answer(gateway)


def test_two_clients_looping_the_nested_body_leave_valid_requests_answered(gateway: Server) -> None:
    body = nested_body(dimensions=32, depth=1000)
    before = decode_steps(gateway)
    rounds = 40
    stop = threading.Event()
    answered: list[int] = []

    def hostile() -> None:
        with httpx.Client(timeout=120) as client:
            for _ in range(rounds):
                assert client.post(gateway.url + INFER, content=body).status_code == 400

    def valid() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                answer = client.post(gateway.url + INFER, content=VALID)
                assert answer.status_code == 200, answer.text
                answered.append(1)

    watcher = threading.Thread(target=lambda: in_threads(1, valid))
    watcher.start()
    errors = in_threads(2, hostile)
    stop.set()
    watcher.join(timeout=120)
    assert not errors, errors
    assert answered, "no valid request was answered beside the hostile ones"
    assert decode_steps(gateway) - before <= 2 * rounds * len(body)


# -- 2. huge shapes: refused before their product is worked out --------------------------------


def test_six_huge_shapes_in_flight_get_400_and_valid_requests_are_answered(gateway: Server) -> None:
    body = huge_shape_body()  # ~683 KB: read in the decode pool
    assert len(body) > 600_000
    before = decode_steps(gateway)

    def hostile() -> None:
        answer = post(gateway, body)
        assert answer.status_code == 400, answer.text
        assert "at most 32 dimensions" in answer.json()["error"]
        assert len(answer.content) < 2_000  # the message names the shape briefly, not all 35,000

    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: errors.extend(in_threads(6, hostile)))
    runner.start()
    for _ in range(5):
        valid_answer(gateway)
    runner.join(timeout=300)
    assert not errors, errors
    assert decode_steps(gateway) - before <= 6 * len(body)


@pytest.mark.parametrize("dimensions", [33, 300, 35_000])
def test_a_huge_grpc_shape_is_invalid_argument(gateway: Server, dimensions: int) -> None:
    message = pb.ModelInferRequest(model_name="iris")
    tensor = message.inputs.add(name=COLUMNS[0], datatype="FP64", shape=[BIG_INT] * dimensions)
    tensor.contents.fp64_contents.append(1.0)
    code, details = grpc_infer(gateway, message.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "at most 32 dimensions" in details and len(details) < 2_000
    valid_answer(gateway)


def test_a_shape_whose_count_has_thousands_of_digits_is_400(gateway: Server) -> None:
    """300 dimensions of 2**63-1: a count of ~5,700 digits, past what Python will print (a 500)."""
    answer = post(gateway, huge_shape_body(300))
    assert answer.status_code == 400 and "at most 32 dimensions" in answer.json()["error"]
    within_rank = huge_shape_body(32)  # within the rank: the product stops at the element limit
    answer = post(gateway, within_rank)
    assert answer.status_code == 400 and "too many elements" in answer.json()["error"], answer.text


# -- 3. request heads: bounded at the transport -------------------------------------------------


def send_head(server: Server, head: bytes, chunk: int = 1 << 20) -> bytes:
    """Send ``head`` (in chunks, as a client streams it) and return what the server answered.
    A server that refuses early may stop reading: a failed send is expected then."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            while piece := sock.recv(65536):
                received += piece
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def request_head(header_value_bytes: int, path: str = INFER, body: bytes = VALID) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Lockgate-Route-Key: ".encode()
        + b"k" * header_value_bytes
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_a_64_mib_header_is_refused_without_being_buffered(gateway: Server) -> None:
    valid_answer(gateway)
    before = rss_bytes(gateway)
    answers = []
    errors = in_threads(2, lambda: answers.append(send_head(gateway, request_head(64 << 20))))
    assert not errors, errors
    grown = rss_bytes(gateway) - before
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"LOCKGATE_MAX_HEADER_BYTES" in answer
    # uvicorn's own httptools protocol grew by 261-289 MiB for these two requests.
    assert grown < 20 << 20, f"the server grew by {grown / 2**20:.1f} MiB"
    valid_answer(gateway)


def test_a_head_that_arrives_whole_is_held_to_the_same_bound(gateway: Server) -> None:
    answer = send_head(gateway, request_head(40 << 10))  # one send: the head completes in one chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    answer = send_head(gateway, request_head(8 << 10))  # within the bound: served
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    many = httpx.post(gateway.url + INFER, content=VALID, timeout=60,
                      headers={f"x-h{i}": "v" * 100 for i in range(400)})  # fmt: skip
    assert many.status_code == 431 and many.json()["error_code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"


def test_keep_alive_connections_and_big_bodies_pass_the_head_bound(gateway: Server) -> None:
    """The bound counts heads only: a body far past it, and many requests on one connection, pass."""
    rows = {"inputs": [{"name": c, "datatype": "FP64", "shape": [20_000], "data": [v] * 20_000}
                       for c, v in zip(COLUMNS, ROW, strict=True)]}  # fmt: skip
    big = json.dumps(rows).encode()
    assert len(big) > 300_000
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            answer = client.post(gateway.url + INFER, content=big)
            assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [20_000]
        for _ in range(50):
            assert client.post(gateway.url + INFER, content=VALID).status_code == 200


# -- 4. the low cases -----------------------------------------------------------------------------


# b"\xb2" is "²" in latin-1, how the server reads header bytes: str.isdigit() takes it, int() does not.
@pytest.mark.parametrize("length", [b"\xb2", b"1" * 5_000, b"-1", b"0x10", "٣".encode()])
def test_a_bad_inference_header_content_length_is_400(gateway: Server, length: bytes) -> None:
    headers = {b"Inference-Header-Content-Length": length}
    answer = httpx.post(gateway.url + INFER, content=VALID, headers=headers, timeout=60)
    assert answer.status_code == 400, answer.text
    assert "Inference-Header-Content-Length" in answer.json()["error"]
    assert len(answer.content) < 1_000


@pytest.mark.parametrize("parameters", [[1], "binary", 7, True])
def test_an_output_whose_parameters_are_not_an_object_is_400(gateway: Server, parameters: object) -> None:
    body = json.loads(VALID)
    body["outputs"] = [{"name": "predict", "parameters": parameters}]
    answer = post(gateway, json.dumps(body).encode())
    assert answer.status_code == 400, answer.text
    assert "'parameters' of output 'predict' must be an object" in answer.json()["error"]


def grpc_infer(server: Server, raw: bytes) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes as a ModelInferRequest (the channel serializes nothing)."""
    with grpc.insecure_channel(server.grpc_address) as channel:  # type: ignore[attr-defined]
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            call(raw, timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), str(exc.details())
    return grpc.StatusCode.OK, ""


def test_grpc_contents_and_raw_contents_together_are_invalid_argument(gateway: Server) -> None:
    message = pb.ModelInferRequest(model_name="iris")
    for column, value in zip(COLUMNS, ROW, strict=True):
        message.inputs.add(name=column, datatype="FP64", shape=[1]).contents.fp64_contents.append(value)
        message.raw_input_contents.append(struct_double(value + 100))
    code, details = grpc_infer(gateway, message.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not both" in details


def struct_double(value: float) -> bytes:
    import struct

    return struct.pack("<d", value)


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12" + b"\x80" * 20])
def test_a_message_that_is_not_protobuf_is_invalid_argument(gateway: Server, raw: bytes) -> None:
    code, details = grpc_infer(gateway, raw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "not a valid ModelInferRequest protobuf message" in details
    with grpc.insecure_channel(gateway.grpc_address) as channel:  # type: ignore[attr-defined]
        ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady")
        with pytest.raises(grpc.RpcError) as caught:
            ready(raw, timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ModelReadyRequest" in str(caught.value.details())
    valid_answer(gateway)


LONG_URIS = [
    f"models:/{'m' * 300}/1",
    f"models:/iris/{'1' * 300}",
    f"lockgate://models@main/{'p' * 300}/model",
    f"runs:/{'r' * 300}/model",
    f"/{'d' * 300}/model",  # a local directory (a materialized copy): looked up as a path
    f"file:///{'d' * 300}",
]


@pytest.mark.parametrize("uri", LONG_URIS)
def test_a_model_uri_with_a_long_path_component_is_400_naming_it(gateway: Server, uri: str) -> None:
    answer = httpx.post(f"{gateway.url}/admin/endpoints", json={"name": "long", "model_uri": uri}, timeout=120)
    assert answer.status_code == 400, answer.text
    assert "path component of 300 bytes: at most 255" in answer.json()["message"], answer.text
    valid_answer(gateway)


def test_a_version_number_past_int64_is_400(gateway: Server) -> None:
    deploy = {"name": "long", "model_uri": f"models:/iris/{'9' * 25}"}
    answer = httpx.post(f"{gateway.url}/admin/endpoints", json=deploy, timeout=120)
    assert answer.status_code == 400 and "is not a version number" in answer.json()["message"], answer.text
