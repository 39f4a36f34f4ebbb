"""A fuzz of the V2 surfaces against a real ``lockgate serve``: hypothesis builds JSON bodies
(shapes, ranks, nesting, datatypes, binary parts and sizes, broken bytes) and gRPC
``ModelInferRequest`` messages (typed and raw contents, hostile shapes, broken bytes), and every
answer must be a success or a client error: no 5xx, no gRPC UNKNOWN or INTERNAL, and each within
the client's timeout (``ANSWER_SECONDS``), which is the bound on the time of each answer.

The short run is part of every suite; the long one (``slow``, which CI runs) takes ten times as
many examples. Both are bounded in examples, and hypothesis's database is off (nothing is written).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc.service_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import Server
from tests.test_v2_hostile import COLUMNS, INFER, start_iris_gateway, valid_answer

ANSWER_SECONDS = 20.0  # generous on a shared 2-core machine; the old flatten took 5-6 s per body
SHORT, LONG = 150, 1500
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip
GRPC_CLIENT_ERRORS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_iris_gateway(tmp_path_factory.mktemp("fuzz"))
    yield server
    try:
        valid_answer(server)  # still serving after everything the fuzz sent
    finally:
        server.stop()


# -- strategies -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
)
names = st.one_of(st.sampled_from(COLUMNS), st.text(max_size=12), st.integers(), st.none())
datatypes = st.one_of(st.sampled_from(DATATYPES), st.text(max_size=6), st.integers(), st.none())
dimensions = st.one_of(st.integers(0, 6), st.integers(-3, 2**63), st.booleans(), st.floats(), st.text(max_size=2))
shapes = st.one_of(st.lists(dimensions, max_size=6), st.lists(st.integers(0, 2**63 - 1), min_size=30, max_size=80),
                   st.integers(), st.none())  # fmt: skip


def nested_data(depth: int) -> Any:
    """Data nested up to ``depth`` lists deep, with ragged and mixed rows."""
    return st.recursive(st.lists(scalars, max_size=6), lambda inner: st.lists(inner, max_size=4), max_leaves=depth)


def datas() -> Any:
    return st.one_of(nested_data(12), scalars, st.dictionaries(st.text(max_size=3), scalars, max_size=2))


parameters = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["binary_data_size", "content_type", "binary_data", "x"]),
                    st.one_of(st.integers(-5, 64), st.booleans(), st.text(max_size=3)), max_size=2),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
)  # fmt: skip
inputs = st.fixed_dictionaries(
    {"name": names, "datatype": datatypes, "shape": shapes},
    optional={"data": datas(), "parameters": parameters},
)


@st.composite
def json_bodies(draw: Any) -> tuple[bytes, dict[str, str]]:
    """A V2 REST body and its headers: a document, sometimes a binary part, sometimes broken."""
    document: dict[str, Any] = {"inputs": draw(st.one_of(st.lists(inputs, max_size=5), st.text(max_size=3)))}
    if draw(st.booleans()):
        document["outputs"] = draw(
            st.lists(st.fixed_dictionaries({"name": names}, optional={"parameters": parameters}), max_size=3)
        )
    if draw(st.booleans()):
        document["parameters"] = draw(parameters)
    if draw(st.booleans()):
        document["id"] = draw(st.one_of(st.text(max_size=10), st.integers(), st.lists(st.integers(), max_size=2)))
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    mode = draw(st.sampled_from(["plain", "binary", "truncated", "bytes"]))
    if mode == "binary":
        headers["Inference-Header-Content-Length"] = draw(
            st.one_of(
                st.just(str(len(body))),
                st.integers(-2, len(body) + 4).map(str),
                st.text(st.characters(min_codepoint=33, max_codepoint=255), max_size=4),
            )
        )
        body += draw(st.binary(max_size=64))
    elif mode == "truncated":
        body = body[: draw(st.integers(0, len(body)))]
    elif mode == "bytes":
        body = draw(st.binary(max_size=128))
    return body, headers


def _contents(draw: Any, tensor: Any, datatype: str) -> None:
    field = draw(st.sampled_from(["bool_contents", "int_contents", "int64_contents", "uint_contents",
                                  "uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents"]))  # fmt: skip
    values = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": st.integers(-(2**63), 2**63 - 1),
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=6),
    }[field]
    getattr(tensor.contents, field).extend(draw(st.lists(values, max_size=6)))


@st.composite
def grpc_messages(draw: Any) -> bytes:
    """A serialized ModelInferRequest (typed or raw contents, or both), or bytes that are not one."""
    if draw(st.integers(0, 9)) == 0:
        return bytes(draw(st.binary(max_size=64)))
    message = pb.ModelInferRequest(model_name=draw(st.sampled_from(["iris", "iris", "nope", ""])))
    if draw(st.booleans()):
        message.model_version = draw(st.sampled_from(["1", "2", "x"]))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 5))):
        datatype = draw(st.one_of(st.sampled_from(DATATYPES), st.text(max_size=4)))
        shape = draw(st.one_of(st.lists(st.integers(-3, 6), max_size=5),
                               st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40)))  # fmt: skip
        tensor = message.inputs.add(name=draw(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=6))),
                                    datatype=datatype, shape=shape)  # fmt: skip
        if draw(st.booleans()):
            tensor.parameters["binary_data_size"].int64_param = draw(st.integers(-2, 64))
        if raw or draw(st.integers(0, 4)) == 0:
            message.raw_input_contents.append(draw(st.one_of(st.binary(max_size=48), st.just(struct.pack("<d", 5.1)))))
        if not raw or draw(st.integers(0, 4)) == 0:
            _contents(draw, tensor, datatype)
    for _ in range(draw(st.integers(0, 2))):
        message.outputs.add(name=draw(st.sampled_from(["predict", "predict_proba", "output-0", ""])))
    return bytes(message.SerializeToString())


# -- the runs -----------------------------------------------------------------------------------


def check_json(gateway: Server, client: httpx.Client, case: tuple[bytes, dict[str, str]]) -> None:
    body, headers = case
    # Header bytes as a hostile client sends them (latin-1: every byte, as the server reads them).
    raw_headers = {k.encode(): v.encode("latin-1") for k, v in headers.items()}
    answer = client.post(gateway.url + INFER, content=body, headers=raw_headers)
    assert answer.status_code < 500, (answer.status_code, answer.text[:500], body[:300])
    if answer.status_code >= 400:  # named: V2's {"error"}, or {"error_code", "message"} from the transport
        error = answer.json()
        assert error.get("error") or error.get("message"), (answer.status_code, answer.text[:300])


def check_grpc(call: Any, raw: bytes) -> None:
    try:
        call(raw, timeout=ANSWER_SECONDS)
    except grpc.RpcError as exc:
        assert exc.code() in GRPC_CLIENT_ERRORS, (exc.code(), exc.details(), raw[:200])
        assert exc.details(), "a refused call names the problem"


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,  # each answer's bound is the client timeout, on the server's side of the wire
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def http(gateway: Server) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=ANSWER_SECONDS) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_call(gateway: Server) -> Iterator[Any]:
    with grpc.insecure_channel(gateway.grpc_address) as channel:  # type: ignore[attr-defined]
        yield channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")


@fuzz_settings(SHORT)
@given(case=json_bodies())
def test_fuzz_v2_rest(gateway: Server, http: httpx.Client, case: tuple[bytes, dict[str, str]]) -> None:
    check_json(gateway, http, case)


@fuzz_settings(SHORT)
@given(raw=grpc_messages())
def test_fuzz_v2_grpc(grpc_call: Any, raw: bytes) -> None:
    check_grpc(grpc_call, raw)


@pytest.mark.slow
@fuzz_settings(LONG)
@given(case=json_bodies())
def test_fuzz_v2_rest_long(gateway: Server, http: httpx.Client, case: tuple[bytes, dict[str, str]]) -> None:
    check_json(gateway, http, case)


@pytest.mark.slow
@fuzz_settings(LONG)
@given(raw=grpc_messages())
def test_fuzz_v2_grpc_long(grpc_call: Any, raw: bytes) -> None:
    check_grpc(grpc_call, raw)
