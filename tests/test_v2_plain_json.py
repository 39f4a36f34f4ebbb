"""The plain JSON reader (msgspec's typed decode) only ever agrees with the general reader
(orjson, then the per-input checks): on every body it takes, the request is the general
reader's, value for value and type for type; every body it declines, the general reader reads
(or refuses, naming the problem) exactly as before.

The general reader is reached the way a client reaches it: with an
``Inference-Header-Content-Length`` that covers the whole body (no binary part), which the
plain reader never takes."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from lockgate.gateway.protocols.v2.plain_json import read_plain_json
from lockgate.gateway.protocols.v2.tensors import V2RequestError, read_request


def column(name: str, values: list[Any], datatype: str = "FP64", shape: Any = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(values)] if shape is None else shape, "data": values}


def body_of(inputs: list[dict[str, Any]], **top: Any) -> bytes:
    return json.dumps({"inputs": inputs, **top}).encode()


def outcome(body: bytes, *, general: bool) -> tuple[Any, ...]:
    """What a reader makes of ``body``: its error message, or every field of the request,
    each value with its type (an int 1 is not a float 1.0)."""
    try:
        request = read_request(body, str(len(body)) if general else None)
    except V2RequestError as exc:
        return ("error", str(exc))
    inputs = [
        (t.name, t.datatype, tuple(t.shape), [(type(v), v) for v in t.as_list()], t.parameters) for t in request.inputs
    ]
    return ("ok", inputs, request.request_id, request.parameters, request.outputs)


def agree(body: bytes) -> tuple[Any, ...]:
    plain, general = outcome(body, general=False), outcome(body, general=True)
    assert plain == general
    return plain


TAKEN = [
    [column("a", [1.5]), column("b", [-2]), column("c", [1e308])],
    [column("x", [1, 2, 3], "INT64"), column("y", ["p", "q", "r"], "BYTES"), column("z", [True, False, True], "BOOL")],
    [column("i8", [-128, 127], "INT8"), column("u8", [0, 255], "UINT8"), column("i16", [-32768, 32767], "INT16")],
    [column("u16", [65535], "UINT16"), column("i32", [-(2**31)], "INT32"), column("u32", [2**32 - 1], "UINT32")],
    [column("i64", [-(2**63), 2**63 - 1], "INT64"), column("u64", [0, 2**64 - 1], "UINT64")],
    [column("f32", [3.4028234663852886e38, -1.5, 2], "FP32"), column("f16", [0.5, 1, 2], "FP16")],
    [column("a", [-0.0, 1e-320, 5e-324, 2.2250738585072014e-308])],  # signed zero, subnormals
    [column("s", ["", "é", "\u2603", 'a"b\\c\n'], "BYTES")],  # empty, non-ASCII, escapes
    [column("a", [1.0, 2.0]), column("b", [3.0])],  # inputs of different lengths: rows unknown
    [column("a", [], "FP64")],  # shape [0]
    [
        column("input", [5.8, 4.0, 1.2, 0.2, 1.0, 2.0, 3.0, 4.5], shape=[2, 4])
    ],  # one matrix, as tritonclient sends numpy
    [column("m", [1, 2, 3, 4, 5, 6], "INT32", shape=[1, 2, 3]), column("v", [True, False], "BOOL")],  # mixed ranks
    [column("e", [], shape=[0, 4])],
]


@pytest.mark.parametrize("inputs", TAKEN)
def test_a_plain_body_is_read_exactly_as_the_general_reader_reads_it(inputs: list[dict[str, Any]]) -> None:
    body = body_of(inputs)
    assert read_plain_json(body, 50_000_000) is not None  # the plain reader really took it
    assert agree(body)[0] == "ok"


@pytest.mark.parametrize(
    "top",
    [
        {"id": "req-7"},
        {"id": 42},
        {"parameters": {"binary_data_output": True}},  # what tritonclient sends with no outputs
        {"parameters": {"temperature": 0.5, "mode": "x", "n": 3, "none": None}},
        {"outputs": [{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": False}}]},
        {"outputs": [{"name": "predict", "parameters": None}]},
        {"outputs": [], "parameters": {}, "unknown_key": {"ignored": [1, 2]}},
    ],
)
def test_the_request_fields_beside_the_inputs_match(top: dict[str, Any]) -> None:
    body = body_of([column("a", [1.0]), column("b", [2], "INT64")], **top)
    assert read_plain_json(body, 50_000_000) is not None
    assert agree(body)[0] == "ok"


def test_whitespace_key_order_and_repeated_keys_read_as_orjson_reads_them() -> None:
    spaced = (
        b'\n{ "inputs" : [ { "data" : [ 1.5 , 2 ] ,\t"shape" : [ 2 ] , "datatype" : "FP64" , "name" : "a" } ] }\r\n'
    )
    repeated = b'{"inputs": [{"name": "x", "name": "a", "shape": [9], "shape": [1], "datatype": "FP64", "data": [1]}]}'
    for body in (spaced, repeated):
        assert read_plain_json(body, 50_000_000) is not None
        assert agree(body)[0] == "ok"


DECLINED = [
    body_of([column("a", [100000000000000000000])]),  # past int64: orjson makes it a float
    body_of([column("a", [2**64], "UINT64")]),  # past UINT64
    body_of([column("a", [-1], "UINT8")]),
    body_of([column("a", [128], "INT8")]),
    body_of([column("a", [1.0], "INT32")]),  # a float where an integer belongs
    body_of([column("a", [1e39], "FP32")]),  # not FP32 data
    body_of([column("a", [True])]),  # a boolean as a number
    body_of([column("a", [1], "BOOL")]),
    body_of([column("a", [1], "BYTES")]),
    body_of([column("a", ["1"])]),
    body_of([column("a", [None])]),
    body_of([column("a", [[1.0]])]),  # nested data
    body_of([column("a", [1.0, 2.0], shape=[1])]),  # shape and data disagree
    body_of([column("a", [1.0], shape=[-1])]),
    body_of([column("a", [1.0, 2.0, 3.0], shape=[2, 2])]),  # a matrix its data does not fill
    body_of([column("a", [[1.0, 2.0], [3.0, 4.0]], shape=[2, 2])]),  # nested data: the general reader flattens it
    body_of([column("a", [1.0], shape=[])]),  # rank 0
    body_of([column("a", [1.0], shape=[2**62, 2**62, 0])]),  # a hostile shape's product
    body_of([column("a", [1.0], shape=[True])]),
    body_of([column("a", [1.0], shape=[1.0])]),
    body_of([column("a", [1.0], "FP128")]),
    body_of([column("", [1.0])]),
    body_of([{**column("a", [1.0]), "parameters": {}}]),  # a fifth key
    body_of([{"name": "a", "shape": [1], "data": [1.0]}]),  # no datatype
    body_of([]),
    body_of([column("a", [1.0])], id=1.5),
    body_of([column("a", [1.0])], parameters={"nested": {"x": 1}}),
    body_of([column("a", [1.0])], parameters=[1]),
    body_of([column("a", [1.0])], outputs=[{"name": "predict", "extra": 1}]),
    body_of([column("a", [1.0])], outputs=[{"label": "predict"}]),
    body_of([column("a", [1.0])], outputs={"name": "predict"}),
    b'{"inputs": [{"datatype": "BYTES", "name": "a", "shape": [1], "datatype": "FP64", "data": [1.5]}]}',
    b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [NaN]}]}',
    b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1e400]}]}',
    b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]} trailing',
    b'\xef\xbb\xbf{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}',
    b'{"inputs": [{"name": "a\\ud800", "shape": [1], "datatype": "FP64", "data": [1]}]}',
    b"[1, 2]",
    b"",
    b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "inputs": []}',  # past any nesting limit
]


@pytest.mark.parametrize("body", DECLINED, ids=range(len(DECLINED)))
def test_what_the_plain_reader_declines_the_general_reader_reads_as_before(body: bytes) -> None:
    assert read_plain_json(body, 50_000_000) is None
    agree(body)


def test_a_repeated_name_is_refused_with_the_general_readers_message() -> None:
    body = body_of([column("a", [1.0]), column("a", [2.0])])
    assert agree(body) == ("error", "input names repeat: ['a', 'a']")


def test_random_doubles_parse_to_the_same_values() -> None:
    """Floats written every way a client writes them (repr, %.17g, exponent forms, short
    forms): the plain reader's doubles are orjson's, bit for bit."""
    generator = random.Random(20261203)
    values = []
    for _ in range(3000):
        value = struct.unpack("<d", struct.pack("<Q", generator.getrandbits(64)))[0]
        if math.isnan(value) or math.isinf(value):
            continue
        exponent_form, short_form = f"{{:.{generator.randint(0, 25)}e}}", f"{{:.{generator.randint(1, 20)}g}}"
        form = generator.choice(["{!r}", "{:.17g}", exponent_form, short_form])
        values.append(form.format(value))
    data = ", ".join(values)
    body = f'{{"inputs": [{{"name": "a", "datatype": "FP64", "shape": [{len(values)}], "data": [{data}]}}]}}'.encode()
    assert read_plain_json(body, 50_000_000) is not None
    plain, general = outcome(body, general=False), outcome(body, general=True)
    assert plain == general
    read = [struct.pack("<d", v) for _, v in plain[1][0][3]]
    assert read == [struct.pack("<d", v) for _, v in general[1][0][3]]
