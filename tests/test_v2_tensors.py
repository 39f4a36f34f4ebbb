"""V2 tensors: JSON and binary data read back exactly, and every malformed request is named."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from lockgate.gateway.protocols.v2.tensors import V2RequestError, _input, _plain_inputs, output_json, read_request


def binary_request(inputs: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, str]:
    header = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, d, s, raw in inputs
        ]
    }
    text = json.dumps(header).encode()
    return text + b"".join(raw for *_, raw in inputs), str(len(text))


def test_binary_tensors_of_every_kind_read_back() -> None:
    words = ["zürich", "", "a" * 300]
    raw_words = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    floats = np.array([[1.5, -2.25], [1e300, 0.0]], dtype="<f8")
    ints = np.array([1, -(2**40), 7], dtype="<i8")
    flags = np.array([True, False, True], dtype=np.bool_)
    body, length = binary_request([
        ("w", "BYTES", [3], raw_words), ("f", "FP64", [2, 2], floats.tobytes()),
        ("i", "INT64", [3, 1], ints.tobytes()), ("b", "BOOL", [3], flags.tobytes()),
    ])  # fmt: skip
    request = read_request(body, length)
    by_name = {t.name: t for t in request.inputs}
    assert by_name["w"].as_list() == words
    assert by_name["f"].as_list() == floats.ravel().tolist() and by_name["f"].shape == (2, 2)
    assert by_name["i"].array().dtype == np.int64 and by_name["i"].as_list() == ints.tolist()
    assert by_name["b"].array().dtype == np.bool_ and by_name["b"].as_list() == flags.tolist()


def test_json_data_nested_or_flat() -> None:
    nested = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4.5]]}]}
    flat = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4.5]}]}
    for document in (nested, flat):
        (tensor,) = read_request(json.dumps(document).encode(), None).inputs
        array = tensor.array()
        assert array.dtype == np.float32 and array.tolist() == [1.0, 2.0, 3.0, 4.5]


OK = {"name": "ok", "datatype": "FP64", "shape": [1], "data": [1.0]}


def test_plain_inputs_read_as_the_full_reader_reads_them() -> None:
    """The one-pass reader of the common form gives exactly the tensors the per-input reader gives."""
    inputs = [
        {"name": "a", "datatype": "FP64", "shape": [3], "data": [1.5, -2, 1e308]},
        {"name": "b", "datatype": "INT64", "shape": [3], "data": [-(2**63), 0, 2**63 - 1]},
        {"name": "c", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
        {"name": "d", "datatype": "BYTES", "shape": [3], "data": ["zürich", "", "x"]},
        {"name": "e", "datatype": "FP32", "shape": [3], "data": [3.4e38, 0, -1.5]},
        {"name": "f", "datatype": "UINT8", "shape": [3], "data": [0, 255, 7]},
        {"name": "g", "datatype": "FP16", "shape": [0], "data": []},
    ]
    plain = _plain_inputs(inputs)
    assert plain is not None
    full = [_input(raw, index, b"", 0)[0] for index, raw in enumerate(inputs)]
    assert plain.order() == [(t.name, t.datatype, t.values) for t in full]
    request = read_request(json.dumps({"inputs": inputs}).encode(), None)
    assert request.plain is not None and request.inputs == full  # the Tensors, made when asked for
    # Forms it leaves to the full reader: parameters, a nested shape, a matrix.
    assert _plain_inputs([{**inputs[0], "parameters": {}}]) is None
    assert _plain_inputs([{"name": "m", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]}]) is None


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}, "outside INT8's range"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e39]}]}, "outside FP32's range"),
        ({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}]}, "must be integers"),
        ({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}]}, "true or false"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "must be strings"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [[[1]]]}]}, "nested deeper"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1], "data": [1]}]}, "non-negative"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [10**9, 10**9], "data": []}]}, "elements, over"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1]}]}, "neither 'data'"),
        ({"inputs": [{"datatype": "FP64", "shape": [1], "data": [1]}]}, "needs a 'name'"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}] * 2}, "names repeat"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}], "outputs": [7]}, "'outputs'"),
        ({"inputs": "x"}, "non-empty 'inputs'"),
        # A plain input first: the one-pass reader must hand the whole request to the full one.
        ({"inputs": [OK, {"name": "x", "datatype": "FP64", "shape": [1], "data": [True]}]}, "must be numbers"),
        ({"inputs": [OK, {"name": "x", "datatype": "UINT8", "shape": [1], "data": [256]}]}, "outside UINT8's range"),
        ({"inputs": [OK, {"name": "x", "datatype": "FP32", "shape": [1], "data": [-1e39]}]}, "outside FP32's"),
        ({"inputs": [OK, {"name": "x", "datatype": "FP64", "shape": [True], "data": [1]}]}, "non-negative"),
        ({"inputs": [OK, {"name": "x", "datatype": "FP64", "shape": [2], "data": [1]}]}, "shape needs 2"),
        ({"inputs": [OK, {"name": "", "datatype": "FP64", "shape": [1], "data": [1]}]}, "needs a 'name'"),
        ({"inputs": [OK, {"name": "x", "datatype": "FP65", "shape": [1], "data": [1]}]}, "unknown datatype"),
        ({"inputs": [OK, {"name": "x", "datatype": ["FP64"], "shape": [1], "data": [1]}]}, "unknown datatype"),
        ({"inputs": [OK, {"name": "x", "datatype": "BYTES", "shape": [1], "data": [None]}]}, "must be strings"),
        ({"inputs": [OK, OK]}, "names repeat"),
    ],
)
def test_malformed_json_requests_are_named(document: object, needle: str) -> None:
    with pytest.raises(V2RequestError, match=needle):
        read_request(json.dumps(document).encode(), None)


def test_malformed_binary_requests_are_named() -> None:
    body, length = binary_request([("x", "FP64", [2], np.ones(2).tobytes())])
    with pytest.raises(V2RequestError, match="not a length within"):
        read_request(body, str(len(body) + 1))
    with pytest.raises(V2RequestError, match="no input claims"):
        read_request(body + b"extra", length)
    short, short_length = binary_request([("x", "FP64", [3], np.ones(2).tobytes())])
    with pytest.raises(V2RequestError, match="needs 24 bytes"):
        read_request(short, short_length)
    truncated, truncated_length = binary_request([("w", "BYTES", [1], struct.pack("<I", 50) + b"abc")])
    with pytest.raises(V2RequestError, match="runs past its binary data"):
        read_request(truncated, truncated_length)


@pytest.mark.parametrize("binary", [True, False])
def test_outputs_round_trip(binary: bool) -> None:
    for values in (np.array([1, 2], dtype=np.int64), np.array([0.5, 1e-300]), np.array(["a", "bé"], dtype=object)):
        entry, raw = output_json("predict", values, binary=binary)
        assert entry["shape"] == [2]
        if not binary:
            expected = [str(v) for v in values] if entry["datatype"] == "BYTES" else values.tolist()
            assert entry["data"] == expected
        else:
            assert entry["parameters"]["binary_data_size"] == len(raw) > 0
