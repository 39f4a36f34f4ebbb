"""The plain V2 lane (columns read as the codec gave them, no Tensor per input) hands the lean
path exactly the input the general path (Tensors, ``_columns``, ``lean_input``) hands it, and
declines whatever the general path would answer differently.

The deployment here is a stand-in with only the three attributes these functions read
(``parser``, ``batcher``, ``input_names``): the lean input is a pure function of them. The
served path, through a real uvicorn, is tested in test_v2_protocol.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lockgate.gateway.protocols.v2.inference import _columns, lean_input, plain_lean_input
from lockgate.gateway.protocols.v2.tensors import V2Request, V2RequestError, read_request
from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.typed_request import Column, TypedFrameParser

NAMES = ("a", "b", "c")


def numeric_deployment(names: tuple[str, ...] = NAMES) -> Any:
    return SimpleNamespace(parser=NumericFrameParser(names), batcher=object(), input_names=names)


def column(name: str, values: list[Any], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}


def general_input(deployment: Any, request: V2Request) -> Any:
    """What the general path gives: Tensors (made now), the per-column reader, lean_input."""
    tensors = V2Request(list(request.inputs), request.request_id, request.parameters, request.outputs)
    return lean_input(deployment, _columns(tensors, list(deployment.input_names)))


def both(deployment: Any, inputs: list[dict[str, Any]]) -> tuple[Any, Any, bool]:
    """(the plain lane's input, the general path's, whether the plain lane took the request)."""
    request = read_request(json.dumps({"inputs": inputs}).encode(), None)
    assert request.plain is not None
    matches = request.plain.matches(deployment.input_names)
    if not matches:  # then the general path refuses it, and names what is wrong
        with pytest.raises(V2RequestError, match=r"missing inputs|not in the model's signature|rows"):
            general_input(deployment, request)
        return None, None, False
    return plain_lean_input(deployment, request.plain), general_input(deployment, request), True


@pytest.mark.parametrize(
    "inputs",
    [
        [column("a", [1.5]), column("b", [-2]), column("c", [1e308])],  # one row, ints among floats
        [column("c", [3.0, 4.0]), column("a", [1.0, 2.0]), column("b", [5.0, 6.0])],  # not signature order
        [column("a", [1, 2, 3], "INT64"), column("b", [0.5, 0.25, 2.0]), column("c", [7, 8, 9], "INT32")],
        [column("a", [2**63 - 1], "INT64"), column("b", [-(2**63)], "INT64"), column("c", [0.0])],
    ],
)
def test_numeric_columns_give_the_general_paths_matrix(inputs: list[dict[str, Any]]) -> None:
    plain, general, matches = both(numeric_deployment(), inputs)
    assert matches
    assert plain is not None and general is not None
    assert plain.dtype == general.dtype == np.float64
    np.testing.assert_array_equal(plain, general)
    assert plain.tobytes() == general.tobytes()  # bit for bit, not within a tolerance


@pytest.mark.parametrize(
    ("inputs", "matches"),
    [
        ([column("a", [True], "BOOL"), column("b", [1.0]), column("c", [1.0])], True),  # MLflow names it
        ([column("a", ["x"], "BYTES"), column("b", [1.0]), column("c", [1.0])], True),
        ([column("a", [1.0]), column("b", [1.0])], False),  # a column missing
        ([column("a", [1.0]), column("b", [1.0]), column("c", [1.0]), column("d", [1.0])], False),
        ([column("a", [1.0]), column("b", [1.0]), column("x", [1.0])], False),  # one not in the signature
        ([column("a", [1.0, 2.0]), column("b", [1.0]), column("c", [1.0])], False),  # ragged
        ([column("a", []), column("b", []), column("c", [])], True),  # no rows: MLflow's code answers
    ],
)
def test_what_the_lean_path_does_not_take_the_plain_lane_declines(inputs: list[dict[str, Any]], matches: bool) -> None:
    plain, general, matched = both(numeric_deployment(), inputs)
    assert matched is matches
    assert plain is None and general is None  # the general path declines the same request


def test_typed_columns_give_the_general_paths_rows() -> None:
    columns = (Column("amount", "double"), Column("hour", "long"), Column("city", "string"))
    parser = TypedFrameParser(columns)
    deployment = SimpleNamespace(parser=parser, batcher=object(), input_names=tuple(c.name for c in columns))
    inputs = [column("city", ["Berlin", "Zürich"], "BYTES"), column("amount", [1.5, 2.0]),
              column("hour", [3, 23], "INT64")]  # fmt: skip
    plain, general, matches = both(deployment, inputs)
    assert matches and plain is not None and general is not None
    assert plain.columns == general.columns == [[1.5, 2.0], [3, 23], ["Berlin", "Zürich"]]
    assert plain.rows == general.rows == 2
    wrong = [column("city", [1, 2], "INT64"), column("amount", [1.5, 2.0]), column("hour", [3, 23], "INT64")]
    plain, general, _ = both(deployment, wrong)
    assert plain is None and general is None  # an integer city: MLflow's enforcement answers


def test_grpc_contents_are_checked_for_inf_and_nan_and_equal_the_per_input_reader() -> None:
    """gRPC's FP64 contents can hold inf or NaN (such a row goes to MLflow's code, as the general
    path sends it); typed contents give the general path's matrix, bit for bit. In this process,
    beside tritonclient's copy of the same proto package: lockgate's messages live in a descriptor
    pool of their own (``gateway/protocols/v2/grpc_proto/messages.py``), so the two no longer collide."""
    import tritonclient.grpc.service_pb2  # noqa: F401 - the same "inference" package, loaded first

    from lockgate.gateway.protocols.v2.grpc_service import protos, read_infer_request

    def grpc_deployment(names: tuple[str, ...]) -> SimpleNamespace:
        return SimpleNamespace(parser=NumericFrameParser(names), batcher=object(), input_names=names)

    def general(dep: SimpleNamespace, request: V2Request) -> Any:
        tensors = V2Request(list(request.inputs), request.request_id, request.parameters, request.outputs)
        return lean_input(dep, _columns(tensors, list(dep.input_names)))  # type: ignore[arg-type]

    for value in (float("inf"), float("nan")):  # FP64 contents may hold them: MLflow's code answers
        message = protos.ModelInferRequest(model_name="m")
        message.inputs.add(name="a", datatype="FP64", shape=[1]).contents.fp64_contents.append(value)
        request = read_infer_request(message)
        assert request.plain is not None and not request.plain.finite
        assert plain_lean_input(grpc_deployment(("a",)), request.plain) is None  # type: ignore[arg-type]
        assert general(grpc_deployment(("a",)), request) is None

    message = protos.ModelInferRequest(model_name="m")
    message.inputs.add(name="b", datatype="INT64", shape=[2]).contents.int64_contents.extend([1, -(2**63)])
    message.inputs.add(name="a", datatype="FP64", shape=[2]).contents.fp64_contents.extend([0.5, 2.0])
    request = read_infer_request(message)
    assert request.plain is not None and request.plain.names == ("b", "a") and request.plain.rows == 2
    plain = plain_lean_input(grpc_deployment(("a", "b")), request.plain)  # type: ignore[arg-type]
    assert plain is not None
    assert plain.tobytes() == general(grpc_deployment(("a", "b")), request).tobytes()
    np.testing.assert_array_equal(plain, [[0.5, 1.0], [2.0, float(-(2**63))]])


def test_json_columns_are_finite_by_construction() -> None:
    """JSON cannot carry a non-finite number: orjson refuses it, so the lean path needs no check."""
    request = read_request(json.dumps({"inputs": [column("a", [1e308])]}).encode(), None)
    assert request.plain is not None and request.plain.finite
    with pytest.raises(V2RequestError, match="not valid JSON"):
        read_request(b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [1e999]}]}', None)
