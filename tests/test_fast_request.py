"""Lean parsing takes exactly the requests it can answer like MLflow and declines the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lockgate.gateway.serving.fast_request import NumericFrameParser, is_plain_json
from lockgate.gateway.serving.serving_path import numeric_columns

COLUMNS = ("a", "b", "c")
parser = NumericFrameParser(COLUMNS)


def split(columns: list[str], data: list[list[object]], **extra: object) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


def test_split_in_signature_order() -> None:
    matrix = parser.parse(split(["a", "b", "c"], [[1, 2.5, 3], [4, 5, 6]]))
    assert matrix is not None and matrix.dtype == np.float64
    assert matrix.tolist() == [[1.0, 2.5, 3.0], [4.0, 5.0, 6.0]]


def test_split_in_another_order_is_reordered() -> None:
    matrix = parser.parse(split(["c", "a", "b"], [[3, 1, 2]]))
    assert matrix is not None and matrix.tolist() == [[1.0, 2.0, 3.0]]
    assert matrix.flags.c_contiguous


def test_records() -> None:
    matrix = parser.parse(json.dumps({"dataframe_records": [{"c": 3, "b": 2, "a": 1}]}).encode())
    assert matrix is not None and matrix.tolist() == [[1.0, 2.0, 3.0]]


@pytest.mark.parametrize(
    "body",
    [
        split(["a", "b"], [[1, 2]]),  # missing column
        split(["a", "b", "c", "d"], [[1, 2, 3, 4]]),  # extra column
        split(["a", "a", "b"], [[1, 2, 3]]),  # repeated column
        split(["a", "b", "c"], [[1, "x", 3]]),  # a string
        split(["a", "b", "c"], [[1, None, 3]]),  # a null
        split(["a", "b", "c"], [[1, True, 3]]),  # a boolean
        split(["a", "b", "c"], [[1, 2]]),  # a short row
        split(["a", "b", "c"], [[1, [2], 3]]),  # a nested value
        split(["a", "b", "c"], []),  # empty frame
        split(["a", "b", "c"], [[1, 2, 3]], params={"k": 1}),  # params
        json.dumps({"dataframe_split": {"index": [0], "columns": ["a", "b", "c"], "data": [[1, 2, 3]]}}).encode(),
        json.dumps({"instances": [[1, 2, 3]]}).encode(),
        json.dumps({"dataframe_records": [{"a": 1, "b": 2}]}).encode(),
        json.dumps({"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}]}).encode(),
        json.dumps({"dataframe_records": [[1, 2, 3]]}).encode(),
        b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[NaN, 1, 2]]}}',
        b'{"dataframe_split": {',
        b"[1, 2, 3]",
    ],
)
def test_everything_else_goes_to_mlflows_parser(body: bytes) -> None:
    assert parser.parse(body) is None


def test_only_what_mlflow_parses_as_json_is_plain_json() -> None:
    # Exactly MLflow's reading of the header (checked against a live mlflow models serve in
    # test_gateway_exactness.py): the media type is case-sensitive, charset=utf-8 is allowed.
    assert is_plain_json("application/json")
    assert is_plain_json("application/json; charset=utf-8")
    assert is_plain_json("application/json ; charset=UTF-8")
    assert not is_plain_json("Application/JSON ")  # MLflow: 415
    assert not is_plain_json("application/json; charset=latin-1")
    assert not is_plain_json("application/json; Charset=utf-8")
    assert not is_plain_json("application/json;")
    assert not is_plain_json("text/csv")
    assert not is_plain_json(None)


def test_numeric_columns_from_a_signature() -> None:
    double = {"inputs": json.dumps([{"name": "a", "type": "double"}, {"name": "b", "type": "double"}])}
    assert numeric_columns(double) == (("a", "b"), None)
    mixed = {"inputs": json.dumps([{"name": "a", "type": "double"}, {"name": "city", "type": "string"}])}
    assert numeric_columns(mixed)[0] is None and "string" in str(numeric_columns(mixed)[1])
    optional = {"inputs": json.dumps([{"name": "a", "type": "double", "required": False}])}
    assert numeric_columns(optional) == (None, "the signature has optional columns")
    assert numeric_columns(None) == (None, "the model has no signature")
