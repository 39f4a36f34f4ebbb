"""The typed lean parser builds exactly the frame MLflow's parser and schema enforcement build,
and declines every value whose reading could differ."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc import scoring_server

from lockgate.gateway.serving.typed_request import Column, TypedFrameParser, TypedRows

EXAMPLE = pd.DataFrame(
    {
        "amount": [1.5, 2.0],
        "visits": np.array([1, 2], dtype=np.int64),
        "age": np.array([30, 40], dtype=np.int32),
        "member": [True, False],
        "city": ["Berlin", "Paris"],
        "score": np.array([0.25, 0.5], dtype=np.float32),
    }
)
SCHEMA = infer_signature(EXAMPLE).inputs
COLUMNS = tuple(Column(c.name, c.type.name) for c in SCHEMA.inputs)
NAMES = [c.name for c in COLUMNS]


def mlflow_frame(body: bytes) -> pd.DataFrame:
    """What MLflow hands the model: the same two calls the gateway's reference makes."""
    parsed = scoring_server._parse_json_data(body, None, SCHEMA)
    return _enforce_schema(parsed.data, SCHEMA)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def parser() -> TypedFrameParser:
    learned, why_not = TypedFrameParser.learn(COLUMNS, mlflow_frame, EXAMPLE)
    assert learned is not None, why_not
    return learned


def random_rows(rng: np.random.Generator, count: int) -> list[list[Any]]:
    words = ["", "a", "Zürich", "naïve café", "x" * 300, "1", "null", "ünïcödé", "tab\there"]
    return [
        [
            float(rng.normal() * 10.0 ** int(rng.integers(-5, 12)))
            if rng.random() < 0.8
            else int(rng.integers(-(10**6), 10**6)),
            int(rng.integers(-(2**62), 2**62)),
            int(rng.integers(-(2**31), 2**31 - 1)),
            bool(rng.random() < 0.5),
            str(rng.choice(words)),
            float(rng.normal() * 1e30) if rng.random() < 0.5 else int(rng.integers(-(2**24), 2**24)),
        ]
        for _ in range(count)
    ]


@pytest.mark.parametrize("seed", range(12))
def test_frames_equal_mlflows_on_random_rows(parser: TypedFrameParser, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, int(rng.integers(1, 40)))
    for body in (
        {"dataframe_split": {"columns": NAMES, "data": rows}},
        {"dataframe_records": [dict(zip(NAMES, row, strict=True)) for row in rows]},
        {"instances": [dict(zip(NAMES, row, strict=True)) for row in rows]},
        {"inputs": {name: [row[i] for row in rows] for i, name in enumerate(NAMES)}},
    ):
        raw = json.dumps(body).encode()
        parsed = parser.parse(raw)
        assert parsed is not None, next(iter(body))
        pd.testing.assert_frame_equal(parser.frame(parsed), mlflow_frame(raw), check_exact=True)


ROW: list[Any] = [1.5, 3, 4, True, "Berlin", 0.5]


def with_value(index: int, value: Any) -> bytes:
    row = list(ROW)
    row[index] = value
    return json.dumps({"dataframe_split": {"columns": NAMES, "data": [row]}}).encode()


@pytest.mark.parametrize(
    "body",
    [
        with_value(0, None),  # a null double: MLflow makes it NaN
        with_value(0, True),  # a boolean for a double
        with_value(0, "1.5"),  # a string for a double
        with_value(0, 2**60),  # an int a float64 cannot hold exactly
        with_value(1, 3.0),  # a float for a long, even a whole one
        with_value(1, 2**63),  # past int64
        with_value(2, 2**31),  # past int32
        with_value(3, 1),  # an int for a boolean
        with_value(4, 7),  # a number for a string
        with_value(4, None),  # a null string
        with_value(5, 1e39),  # past float32's range
        with_value(5, 2**24 + 1),  # an int float32 cannot hold exactly
        json.dumps({"dataframe_split": {"columns": NAMES, "data": [ROW]}, "params": {"a": 1}}).encode(),
        json.dumps({"dataframe_split": {"columns": NAMES[:5], "data": [ROW[:5]]}}).encode(),
        json.dumps({"inputs": {name: ROW[i] for i, name in enumerate(NAMES)}}).encode(),  # scalars
        json.dumps({"instances": [ROW]}).encode(),  # lists, not records
    ],
)
def test_declines_what_mlflow_must_read(parser: TypedFrameParser, body: bytes) -> None:
    assert parser.parse(body) is None


def test_batches_concatenate_column_by_column(parser: TypedFrameParser) -> None:
    first = parser.parse(json.dumps({"dataframe_split": {"columns": NAMES, "data": [ROW]}}).encode())
    second_row = [2.5, 5, 6, False, "Paris", 1.0]
    second = parser.parse(json.dumps({"dataframe_split": {"columns": NAMES, "data": [second_row, ROW]}}).encode())
    assert first is not None and second is not None
    merged = TypedRows.concat([first, second])
    assert len(merged) == 3
    both = json.dumps({"dataframe_split": {"columns": NAMES, "data": [ROW, second_row, ROW]}}).encode()
    pd.testing.assert_frame_equal(parser.frame(merged), mlflow_frame(both), check_exact=True)


def test_learning_fails_closed_when_frames_would_differ() -> None:
    """A reference that builds another dtype (as a new pandas might) turns the lean path off."""

    def object_strings(body: bytes) -> pd.DataFrame:
        frame = mlflow_frame(body)
        return frame.assign(city=frame["city"].astype(object)).assign(age=frame["age"].astype(np.int64))

    learned, why_not = TypedFrameParser.learn(COLUMNS, object_strings, EXAMPLE)
    assert learned is None and why_not is not None and "differs from MLflow's" in why_not
