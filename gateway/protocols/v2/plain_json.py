"""The plain V2 JSON request in one typed decode: msgspec reads and checks it in C.

Most V2 JSON traffic is the plain form: inputs of only ``{"name", "datatype", "shape", "data"}``
with flat ``data``. One input per column (tritonclient from a DataFrame, MLServer's ``"pd"``
convention) is ``shape: [N]`` each; one matrix (tritonclient from a numpy array) is one input of
``shape: [N, columns]``. The general reader parses it with orjson into a dict per input, then
checks every input in Python passes (``_plain_inputs``, or ``_input`` for a matrix): for a
1-row, 40-column request that was 9 us of parse and 15 us of checks, in process.

Here msgspec decodes the body straight into typed structs, one struct per datatype (tagged by
``datatype``) whose ``data`` admits only that datatype's JSON values, in range; no other key may
appear. All of it is checked while parsing, in C, with no dict per input and no Python pass per
value (about 11 us for the same request). What is left in Python is one comparison per input:
its shape holds as many elements as its data.

This reader only accepts: anything it declines (a binary part, another key, a value out of
range, nested ``data``, a shape its data does not fill, a body that is not JSON) returns None,
and the general reader reads the body and names what is wrong. Every value it returns is the
one orjson would give: integers are held to the 64-bit ranges orjson keeps as integers (past
them orjson gives floats), floats parse to the same doubles, and a repeated key keeps its last
value as in orjson (a repeated ``datatype`` is declined). ``tests/test_v2_plain_json.py`` holds
it to that.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Union

import msgspec
from msgspec import Meta

from lockgate.gateway.protocols.v2.datatypes import FP32_MAX, INTEGER_RANGES
from lockgate.gateway.protocols.v2.plain import PlainColumns

_INT64_MIN, _INT64_MAX = INTEGER_RANGES["INT64"]
_UINT64_MAX = INTEGER_RANGES["UINT64"][1]
# The integers orjson returns as ints (it turns larger ones into floats). UINT64's top half is
# checked after the decode: msgspec's bounds stop at int64.
_Int64 = Annotated[int, Meta(ge=_INT64_MIN, le=_INT64_MAX)]
_Number = _Int64 | float  # FP data: JSON integers stay ints, as orjson gives them
_Scalar = str | bool | _Int64 | float | None


def _bounded(datatype: str) -> Any:
    low, high = INTEGER_RANGES[datatype]
    return Annotated[int, Meta(ge=low)] if datatype == "UINT64" else Annotated[int, Meta(ge=low, le=high)]


_VALUE_TYPES: dict[str, Any] = {
    **{datatype: _bounded(datatype) for datatype in INTEGER_RANGES},
    "FP16": _Number,
    "FP32": _Int64 | Annotated[float, Meta(ge=-FP32_MAX, le=FP32_MAX)],  # inf is not FP32 data
    "FP64": _Number,
    "BOOL": bool,
    "BYTES": str,
}


def _input_struct(datatype: str, value_type: Any) -> type[msgspec.Struct]:
    fields = [
        ("name", Annotated[str, Meta(min_length=1)]),
        ("shape", Annotated[list[Annotated[int, Meta(ge=0)]], Meta(min_length=1)]),
        ("data", list[value_type]),
    ]
    # gc=False: the structs hold lists of scalars and strings, never a cycle.
    return msgspec.defstruct(
        f"PlainInput{datatype}", fields, tag=datatype, tag_field="datatype", forbid_unknown_fields=True, gc=False
    )


_INPUT_STRUCTS = {datatype: _input_struct(datatype, kind) for datatype, kind in _VALUE_TYPES.items()}
_DATATYPE_OF_STRUCT = {struct: datatype for datatype, struct in _INPUT_STRUCTS.items()}


class _Output(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    # UNSET tells an absent "parameters" from a null one, so the dict matches orjson's exactly.
    parameters: dict[str, _Scalar] | msgspec.UnsetType | None = msgspec.UNSET


class _PlainRequest(msgspec.Struct, gc=False):
    # Other top-level keys are skipped, as the general reader ignores them.
    inputs: Annotated[list[Union[tuple(_INPUT_STRUCTS.values())]], Meta(min_length=1)]  # type: ignore[valid-type]  # noqa: UP007 - built from a tuple
    id: str | _Int64 | None = None
    parameters: dict[str, _Scalar] | None = None
    outputs: list[_Output] | None = None


_DECODER = msgspec.json.Decoder(_PlainRequest)
_NAME, _SHAPE, _DATA = attrgetter("name"), attrgetter("shape"), attrgetter("data")

# (name, datatype, shape, flat values): an input of rank 2 or more, for the reader to make a Tensor of.
PlainTensor = tuple[str, str, tuple[int, ...], list[Any]]
PlainJson = tuple[PlainColumns | list[PlainTensor], str | None, dict[str, Any], list[dict[str, Any]]]


def read_plain_json(body: bytes, max_elements: int) -> PlainJson | None:
    """(the inputs, the request id, its parameters, its requested outputs) of a plain JSON
    request, or None for any other body (the general reader's to read). The inputs are
    ``PlainColumns`` when every one has rank 1, else one ``PlainTensor`` per input."""
    try:
        request = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # RecursionError: nesting past msgspec's limit, in a key this reader skips
    inputs = request.inputs
    datas = tuple(map(_DATA, inputs))
    shapes = list(map(_SHAPE, inputs))
    datatypes = tuple(map(_DATATYPE_OF_STRUCT.__getitem__, map(type, inputs)))
    if "UINT64" in datatypes and _past_uint64(datatypes, datas):
        return None
    request_id = None if request.id is None else str(request.id)
    outputs = [_output_dict(output) for output in request.outputs or ()]
    parameters = request.parameters or {}
    if set(map(len, shapes)) == {1}:  # one column per input, the usual request
        firsts = [shape[0] for shape in shapes]
        if firsts != list(map(len, datas)):
            return None  # shape [N] with other than N values: the general reader says so
        rows = firsts[0] if firsts.count(firsts[0]) == len(firsts) else None
        # JSON numbers are finite: msgspec, like orjson, refuses NaN, Infinity and overflow.
        columns = PlainColumns(tuple(map(_NAME, inputs)), datatypes, datas, rows, finite=True)
        return columns, request_id, parameters, outputs
    tensors = []
    for name, datatype, shape, values in zip(map(_NAME, inputs), datatypes, shapes, datas, strict=True):
        if _elements(shape, len(values)) != len(values) or len(values) > max_elements:
            return None
        tensors.append((name, datatype, tuple(shape), values))
    return tensors, request_id, parameters, outputs


def _elements(shape: list[int], limit: int) -> int:
    """The elements ``shape`` holds, or limit + 1 once it is past ``limit`` (a hostile shape's
    product is never worked out in full)."""
    count = 1
    for dimension in shape:
        count *= dimension
        if count > limit:
            return limit + 1
    return count


def _past_uint64(datatypes: tuple[str, ...], datas: tuple[list[Any], ...]) -> bool:
    return any(
        values and max(values) > _UINT64_MAX
        for datatype, values in zip(datatypes, datas, strict=True)
        if datatype == "UINT64"
    )


def _output_dict(output: _Output) -> dict[str, Any]:
    """A requested output as the general reader holds it (a dict with ``name``, ``parameters``)."""
    if output.parameters is msgspec.UNSET:
        return {"name": output.name}
    return {"name": output.name, "parameters": output.parameters}
