"""Open Inference Protocol (KServe V2) tensors over REST: JSON ``data`` and the binary tensor data
extension, both ways.

A request body is a JSON object, optionally followed by binary tensor data: the
``Inference-Header-Content-Length`` header gives the JSON's length, and each input that has
``parameters.binary_data_size`` takes that many bytes, in input order (little-endian, row-major;
BOOL one byte; BYTES a 4-byte little-endian length before each element). Everything here
raises ``V2RequestError`` with a message that names the input and what is wrong with it.
"""

from __future__ import annotations

import re
import reprlib
import struct
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from lockgate.gateway.errors import BadRequestError
from lockgate.gateway.protocols.v2.datatypes import DATATYPES, FP32_MAX, INTEGER_RANGES
from lockgate.gateway.protocols.v2.plain import PlainColumns
from lockgate.gateway.protocols.v2.plain_json import read_plain_json
from lockgate.gateway.serving import decode_steps as steps

_MAX_ELEMENTS = 50_000_000  # a shape past this is refused before any allocation
# numpy's own limit is 64 dimensions; no model input has more than a handful. A rank bound keeps
# a shape's check constant-time before a single dimension is read.
MAX_RANK = 32
# Inference-Header-Content-Length: ASCII digits only (str.isdigit() also takes "²"), at most 20.
_HEADER_LENGTH = re.compile(r"[0-9]{1,20}")
# numpy dtype -> V2 datatype, for outputs.
_DATATYPE_OF: dict[Any, str] = {np.dtype(kind): name for name, kind in DATATYPES.items() if kind is not object}


class V2RequestError(BadRequestError, ValueError):
    """A V2 request that cannot be read: answered 400 ``{"error": message}`` (gRPC: INVALID_ARGUMENT)."""

    error_code = "INVALID_V2_REQUEST"


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    # Flat, row-major: a Python list (JSON data, gRPC contents), already checked against the
    # datatype, or an ndarray (binary data). Lists stay lists: for a 1-row request, numpy per
    # input would cost more than the whole lean parse.
    values: list[Any] | np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    def array(self) -> np.ndarray:
        """The values as an ndarray of the tensor's datatype."""
        if isinstance(self.values, np.ndarray):
            return self.values
        return np.array(self.values, dtype=DATATYPES[self.datatype])

    def as_list(self) -> list[Any]:
        return self.values if isinstance(self.values, list) else self.values.tolist()


class V2Request:
    """A read request. Its ``inputs`` are Tensors; a plain request (``plain``) makes them only
    when a path other than the lean one asks for them."""

    __slots__ = ("_inputs", "outputs", "parameters", "plain", "request_id")

    def __init__(
        self,
        inputs: list[Tensor] | None,
        request_id: str | None,
        parameters: dict[str, Any],
        outputs: list[dict[str, Any]],  # requested outputs (name, parameters.binary_data)
        plain: PlainColumns | None = None,
    ) -> None:
        assert inputs is not None or plain is not None
        self._inputs = inputs
        self.request_id = request_id
        self.parameters = parameters
        self.outputs = outputs
        self.plain = plain

    @property
    def inputs(self) -> list[Tensor]:
        if self._inputs is None:
            assert self.plain is not None
            self._inputs = [
                Tensor(name, datatype, (len(values),), values, {}) for name, datatype, values in self.plain.order()
            ]
        return self._inputs


def read_request(body: bytes, header_length: str | None) -> V2Request:
    if header_length is None:  # the plain form, read and checked in one typed decode
        plain_json = read_plain_json(body, _MAX_ELEMENTS)
        if plain_json is not None:
            read, request_id, parameters, outputs = plain_json
            if isinstance(read, PlainColumns):
                check_input_names(list(read.names))
                return V2Request(None, request_id, parameters, outputs, read)
            tensors = [Tensor(name, datatype, shape, values, {}) for name, datatype, shape, values in read]
            check_input_names([t.name for t in tensors])
            return V2Request(tensors, request_id, parameters, outputs)
    json_part, binary = _split(body, header_length)
    try:
        document = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise V2RequestError(f"the request is not valid JSON: {exc}") from exc
    if type(document) is not dict:
        raise V2RequestError("the request must be a JSON object with an 'inputs' list")
    raw_inputs = document.get("inputs")
    if type(raw_inputs) is not list or not raw_inputs:
        raise V2RequestError("the request needs a non-empty 'inputs' list")
    parameters = _parameters(document.get("parameters"), "the request")
    offset = 0
    plain = _plain_inputs(raw_inputs)  # plain inputs claim no binary data
    inputs: list[Tensor] | None = None
    if plain is None:
        inputs = []
        for index, raw in enumerate(raw_inputs):
            tensor, used = _input(raw, index, binary, offset)
            inputs.append(tensor)
            offset += used
    if offset != len(binary):
        raise V2RequestError(f"{len(binary) - offset} bytes of binary data follow the inputs that no input claims")
    check_input_names(list(plain.names) if plain is not None else [t.name for t in inputs or ()])
    outputs = document.get("outputs") or []
    if type(outputs) is not list or any(type(o) is not dict or type(o.get("name")) is not str for o in outputs):
        raise V2RequestError("'outputs' must be a list of objects with a 'name'")
    for output in outputs:
        _parameters(output.get("parameters"), f"output {brief(output['name'])}")
    request_id = document.get("id")
    return V2Request(inputs, None if request_id is None else str(request_id), parameters, outputs, plain)


def check_input_names(names: list[str]) -> None:
    """A request has inputs, each named once (REST and gRPC alike)."""
    if not names:
        raise V2RequestError("the request needs at least one input")
    if len(set(names)) != len(names):
        raise V2RequestError(f"input names repeat: {names}")


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if _HEADER_LENGTH.fullmatch(header_length) is None or int(header_length) > len(body):
        raise V2RequestError(
            f"Inference-Header-Content-Length {brief(header_length)} is not a length within the {len(body)}-byte body"
        )
    cut = int(header_length)
    return body[:cut], body[cut:]


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if type(raw) is not dict:
        raise V2RequestError(f"'parameters' of {where} must be an object")
    return raw


def element_count(name: Any, datatype: Any, shape: Any, where: str) -> int:
    """Check a tensor's name, datatype and shape; the number of elements the shape holds.

    Bounded work whatever the request: the rank is checked before any dimension is read, and
    the product stops as soon as it passes the limit (a hostile shape of 35,000 dimensions of
    2**63-1 once took ~6 s of big-integer products, and its count had too many digits to print)."""
    if type(name) is not str or not name:
        raise V2RequestError(f"{where} needs a 'name'")
    if type(datatype) is not str or datatype not in DATATYPES:  # a list is unhashable: a 400, not a 500
        raise V2RequestError(f"input {brief(name)}: unknown datatype {brief(datatype)} (one of {', '.join(DATATYPES)})")
    if type(shape) is not list or len(shape) > MAX_RANK:
        raise V2RequestError(
            f"input {brief(name)}: 'shape' must be a list of at most {MAX_RANK} dimensions, not {brief(shape)}"
        )
    steps.add(len(shape))
    count = 1
    for dimension in shape:
        if type(dimension) is not int or dimension < 0:
            raise V2RequestError(
                f"input {brief(name)}: 'shape' must be a list of non-negative integers, not {brief(shape)}"
            )
        count *= dimension
        if count > _MAX_ELEMENTS:
            raise V2RequestError(
                f"input {brief(name)}: shape {brief(shape)} has too many elements, over {_MAX_ELEMENTS:,}"
            )
    return count


def brief(value: Any) -> str:
    """A bounded repr for an error message: a hostile request names its own huge values."""
    return _BRIEF.repr(value)


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 80
_BRIEF.maxlist = _BRIEF.maxdict = 8


_NUMBERS = frozenset({int, float})
_PLAIN_KINDS: dict[str, frozenset[type]] = {
    **{name: frozenset({int}) for name in INTEGER_RANGES},
    "FP16": _NUMBERS,
    "FP32": _NUMBERS,
    "FP64": _NUMBERS,
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
}


def _plain_inputs(raw_inputs: list[Any]) -> PlainColumns | None:
    """The common request, every input ``{"name", "datatype", "shape": [N], "data": [N values]}``,
    checked whole in C-level passes (``map``, ``zip``, sets) that build no message; None for
    anything else, which ``_input`` reads one input at a time and names what is wrong with. A
    wide model sent one input per column (tritonclient, MLServer's "pd" convention) pays this
    per column: a 1-row, 40-column ``read_request`` took ~300 us through ``_input`` alone,
    90-105 us with a per-input Python loop here, and about 18 us plus orjson's parse with
    these passes (in process; docs/performance.md, 2026-12-02 and 2026-12-03)."""
    try:
        if set(map(len, raw_inputs)) != {4}:
            return None
        names, datatypes, shapes, datas = zip(*map(_PLAIN_FIELDS, raw_inputs), strict=True)
        kinds_by_datatype = {datatype: _PLAIN_KINDS[datatype] for datatype in set(datatypes)}
    except (KeyError, TypeError):  # a key missing, an input that is not an object, an unknown datatype
        return None
    if set(map(type, names)) != {str} or not all(names):
        return None
    if set(map(type, shapes)) != {list} or set(map(len, shapes)) != {1} or set(map(type, datas)) != {list}:
        return None
    lengths = list(map(len, datas))
    firsts = [shape[0] for shape in shapes]
    if set(map(type, firsts)) != {int} or firsts != lengths:
        return None
    for datatype, kinds in kinds_by_datatype.items():
        if len(kinds_by_datatype) == 1:
            values = list(chain.from_iterable(datas))
        else:
            values = list(chain.from_iterable(d for t, d in zip(datatypes, datas, strict=True) if t == datatype))
        if not values:
            continue
        if not set(map(type, values)) <= kinds:
            return None
        if datatype in INTEGER_RANGES:
            low, high = INTEGER_RANGES[datatype]
            if min(values) < low or max(values) > high:
                return None
        elif datatype == "FP32" and max(map(abs, values)) > FP32_MAX:
            return None
    # JSON numbers are finite: orjson refuses NaN, Infinity and a number past a double's range.
    return PlainColumns(names, datatypes, datas, firsts[0] if len(set(firsts)) == 1 else None, finite=True)


_PLAIN_FIELDS = itemgetter("name", "datatype", "shape", "data")


def _input(raw: Any, index: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if type(raw) is not dict:
        raise V2RequestError(f"inputs[{index}] must be an object")
    name: Any = raw.get("name")
    datatype: Any = raw.get("datatype")
    shape: Any = raw.get("shape")
    count = element_count(name, datatype, shape, f"inputs[{index}]")
    parameters = _parameters(raw.get("parameters"), f"input {brief(name)}")
    size = parameters.get("binary_data_size")
    values: list[Any] | np.ndarray
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise V2RequestError(
                f"input {brief(name)}: binary_data_size {brief(size)} runs past the body's binary data"
            )
        values = from_binary(name, datatype, binary[offset : offset + size], count)
        used = size
    else:
        values = from_values(name, datatype, raw.get("data"), count, len(shape))
        used = 0
    return Tensor(name, datatype, tuple(shape), values, parameters), used


def _flatten(name: str, data: Any, depth: int, count: int) -> list[Any]:
    """Row-major elements of ``data``, nested at most ``depth`` lists deep (the shape's rank),
    in one pass that stops as soon as it has more than ``count`` elements: the work is linear in
    the body's size whatever its shape. (The previous pass-per-level flatten copied every scalar
    once per level: a 30 KB body nested 1,000 deep held the event loop for ~0.6 s.)"""
    if type(data) is not list:
        return [data]
    if not any(type(item) is list for item in data):
        steps.add(len(data))
        return data  # flat already: the common case, no copy
    if depth == 0:
        raise V2RequestError(f"input {brief(name)}: 'data' is nested deeper than its shape")
    flat: list[Any] = []
    append = flat.append
    # An explicit stack of iterators, one per open list: no recursion, and no level is copied.
    stack = [iter(data)]
    visited = 0
    while stack:
        for item in stack[-1]:
            visited += 1
            if type(item) is list:
                if len(stack) > depth:
                    steps.add(visited)
                    raise V2RequestError(f"input {brief(name)}: 'data' is nested deeper than its shape")
                stack.append(iter(item))
                break
            append(item)
            if len(flat) > count:
                steps.add(visited)
                raise V2RequestError(f"input {brief(name)}: shape needs {count} elements, 'data' has more")
        else:
            stack.pop()
    steps.add(visited)
    return flat


def from_values(name: str, datatype: str, data: Any, count: int, rank: int) -> list[Any]:
    """A tensor's checked values from Python values: JSON ``data`` (flat or nested to ``rank``),
    or gRPC contents."""
    if data is None:
        raise V2RequestError(f"input {brief(name)} has neither 'data' nor parameters.binary_data_size")
    flat = _flatten(name, data, max(rank - 1, 0), count)
    if len(flat) != count:
        raise V2RequestError(f"input {brief(name)}: shape needs {count} elements, 'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(type(v) is str for v in flat):
            raise V2RequestError(f"input {brief(name)}: BYTES data must be strings in JSON")
        return flat
    if datatype == "BOOL":
        if not all(type(v) is bool for v in flat):
            raise V2RequestError(f"input {brief(name)}: BOOL data must be true or false")
        return flat
    integral = datatype.startswith(("INT", "UINT"))
    allowed = (int,) if integral else (int, float)
    if not all(type(v) in allowed for v in flat):
        kind = "integers" if integral else "numbers"
        raise V2RequestError(f"input {brief(name)}: {datatype} data must be {kind}")
    if integral:
        low, high = INTEGER_RANGES[datatype]
        if flat and (min(flat) < low or max(flat) > high):
            raise V2RequestError(f"input {brief(name)}: a value is outside {datatype}'s range")
    elif datatype == "FP32" and flat and max(abs(v) for v in flat) > FP32_MAX:
        raise V2RequestError(f"input {brief(name)}: a value is outside FP32's range")
    return flat


def from_binary(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray:
    """A tensor from its raw little-endian bytes (the binary extension, gRPC raw contents)."""
    if datatype == "BYTES":
        out: list[Any] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise V2RequestError(f"input {brief(name)}: a BYTES element's length runs past its binary data")
            (length,) = struct.unpack_from("<I", raw, position)
            position += 4
            if position + length > len(raw):
                raise V2RequestError(f"input {brief(name)}: a BYTES element runs past its binary data")
            element = raw[position : position + length]
            position += length
            try:
                out.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(element)
        if len(out) != count:
            raise V2RequestError(f"input {brief(name)}: shape needs {count} elements, the binary data has {len(out)}")
        return np.array(out, dtype=object)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise V2RequestError(
            f"input {brief(name)}: {datatype} shape needs {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)


def datatype_of(values: np.ndarray) -> str:
    dtype = values.dtype
    # A native dtype is found as it is; only a byte-swapped one needs the (costlier) native copy.
    return _DATATYPE_OF.get(dtype) or _DATATYPE_OF.get(dtype.newbyteorder("="), "BYTES")


def output_json(name: str, values: np.ndarray, *, binary: bool) -> tuple[dict[str, Any], bytes]:
    """One response output: JSON data, or (``binary``) its binary data and size."""
    shaped = np.asarray(values)
    datatype = datatype_of(shaped)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(shaped.shape)}
    if not binary:
        flat = shaped if shaped.ndim == 1 else shaped.reshape(-1)
        entry["data"] = [str(v) for v in flat] if datatype == "BYTES" else flat.tolist()
        return entry, b""
    if datatype == "BYTES":
        pieces = []
        for value in shaped.reshape(-1):
            encoded = value if isinstance(value, bytes) else str(value).encode()
            pieces.append(struct.pack("<I", len(encoded)) + encoded)
        raw = b"".join(pieces)
    else:
        raw = np.ascontiguousarray(shaped).astype(shaped.dtype.newbyteorder("<"), copy=False).tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return entry, raw
