"""Lean request parsing for typed tabular signatures: double, float, long, integer, boolean and
string columns, straight to the DataFrame MLflow's schema enforcement would hand the model.

MLflow's per-request cost for such a model is its parser (``pd.read_json`` and friends) and its
schema enforcement, not the model. This reads the plain forms (``SignatureRows``), checks that
every value already has its column's JSON type, and builds the frame directly with the dtypes
MLflow's own parser produces for this signature. A value of another type (an int for a string,
a float for a long, a null, a number past a column's range) returns None: MLflow's code then
gives MLflow's exact answer or error, including the quirky conversions (``1`` for a boolean) a
direct reading should not imitate.

The dtypes are not written down here: ``TypedFrameParser.learn`` asks MLflow's parser once, at
deploy time, what frame it builds for a probe row, and then checks that this parser builds the
identical frame for every plain form. If any differs (a new pandas or MLflow), the endpoint
serves through MLflow's code and says why. Datetime columns are left to MLflow: its parser
infers a format from the first value, which a direct reading cannot reproduce exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pandas as pd

from lockgate.gateway.serving.lean_document import SignatureRows

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# An int in a float column goes through float64 on MLflow's side; within 2**24 that is exact in
# float32 too, so no double rounding can make the two readings differ.
_FLOAT32_EXACT_INT = 2**24


def _is_double(value: Any) -> bool:
    kind = type(value)
    return kind is float or (kind is int and -(2**53) <= value <= 2**53)


def _is_float(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return bool(-_FLOAT32_MAX <= value <= _FLOAT32_MAX)
    return kind is int and -_FLOAT32_EXACT_INT <= value <= _FLOAT32_EXACT_INT


def _is_long(value: Any) -> bool:
    return type(value) is int and _INT64[0] <= value <= _INT64[1]


def _is_integer(value: Any) -> bool:
    return type(value) is int and _INT32[0] <= value <= _INT32[1]


def _is_boolean(value: Any) -> bool:
    return type(value) is bool


def _is_string(value: Any) -> bool:
    return type(value) is str


# The JSON values each MLflow column type takes on the lean path.
ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "double": _is_double,
    "float": _is_float,
    "long": _is_long,
    "integer": _is_integer,
    "boolean": _is_boolean,
    "string": _is_string,
}
_NUMPY = {"double": np.float64, "long": np.int64, "integer": np.int32, "boolean": np.bool_}
# A value for each type, for the deploy-time probe when the model has no input example.
_PROBE = {"double": 0.5, "float": 0.5, "long": 1, "integer": 1, "boolean": True, "string": "a"}
TYPED_KINDS = frozenset(ACCEPTS)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # an MLflow column type in TYPED_KINDS


class TypedRows:
    """A request's (or a batch's) rows, one Python list per column in signature order."""

    __slots__ = ("columns", "rows")

    def __init__(self, columns: list[list[Any]], rows: int) -> None:
        self.columns = columns
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    @staticmethod
    def concat(parts: Sequence[TypedRows]) -> TypedRows:
        """The batcher's merge: column by column, list concatenation (no pandas)."""
        merged = [list(chain.from_iterable(part.columns[j] for part in parts)) for j in range(len(parts[0].columns))]
        return TypedRows(merged, sum(part.rows for part in parts))


class TypedFrameParser:
    def __init__(self, columns: tuple[Column, ...], dtypes: dict[str, Any] | None = None) -> None:
        self.columns = tuple(column.name for column in columns)
        self.specs = columns
        self._accepts = [ACCEPTS[column.kind] for column in columns]
        self._rows = SignatureRows(self.columns)
        # What MLflow's parser gives each column (learn() fills in the string dtype it uses).
        self._dtypes = dtypes or {}

    def parse(self, body: bytes) -> TypedRows | None:
        rows = self._rows.rows(body)
        if rows is None:
            return None
        columns = [list(values) for values in zip(*rows, strict=True)]
        for accepts, values in zip(self._accepts, columns, strict=True):
            if not all(map(accepts, values)):
                return None
        return TypedRows(columns, len(rows))

    def accepts(self, rows: TypedRows) -> bool:
        """Whether every value of these rows (from another codec, V2) has its column's type."""
        return all(all(map(accepts, values)) for accepts, values in zip(self._accepts, rows.columns, strict=True))

    def frame(self, rows: TypedRows) -> pd.DataFrame:
        """The DataFrame MLflow's schema enforcement would give the model for these rows."""
        data: dict[str, Any] = {}
        for spec, values in zip(self.specs, rows.columns, strict=True):
            if spec.kind == "float":
                data[spec.name] = np.array(values, dtype=np.float64).astype(np.float32)
            elif spec.kind == "string":
                data[spec.name] = pd.array(values, dtype=self._dtypes.get(spec.name, object))
            else:
                data[spec.name] = np.array(values, dtype=_NUMPY[spec.kind])
        return pd.DataFrame(data, copy=False)

    def arrays(self, rows: TypedRows) -> dict[str, np.ndarray]:
        """The rows as numpy columns, for the skew trackers."""
        return {spec.name: np.asarray(values) for spec, values in zip(self.specs, rows.columns, strict=True)}

    @classmethod
    def learn(
        cls,
        columns: tuple[Column, ...],
        reference_frame: Callable[[bytes], pd.DataFrame],
        example: pd.DataFrame | None,
    ) -> tuple[TypedFrameParser | None, str | None]:
        """A parser whose frames are MLflow's, or None and why not. ``reference_frame`` turns a
        JSON body into the frame MLflow's parser and schema enforcement produce."""
        row = _probe_row(columns, example)
        names = [column.name for column in columns]
        bodies: list[dict[str, Any]] = [
            {"dataframe_split": {"columns": names, "data": [row, row]}},
            {"dataframe_records": [dict(zip(names, row, strict=True))]},
            {"instances": [dict(zip(names, row, strict=True))]},
            {"inputs": {name: [value] for name, value in zip(names, row, strict=True)}},
        ]
        try:
            learned = reference_frame(orjson.dumps(bodies[0]))
        except Exception as exc:
            return None, f"MLflow's parser refused the probe row: {exc}"
        dtypes = {c.name: learned[c.name].dtype for c in columns if c.kind == "string" and c.name in learned}
        parser = cls(columns, dtypes)
        for document in bodies:
            body = orjson.dumps(document)
            parsed = parser.parse(body)
            if parsed is None:
                return None, f"the lean parser declines the probe {next(iter(document))} request"
            try:
                pd.testing.assert_frame_equal(parser.frame(parsed), reference_frame(body), check_exact=True)
            except Exception as exc:  # AssertionError, or MLflow refusing a form
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return None, f"the lean frame differs from MLflow's for {next(iter(document))}: {first_line}"
        return parser, None


def _probe_row(columns: tuple[Column, ...], example: pd.DataFrame | None) -> list[Any]:
    """The input example's first row where it has the right JSON types, else a probe value."""
    row: list[Any] = []
    first = example.iloc[0] if isinstance(example, pd.DataFrame) and len(example) else None
    for column in columns:
        value = None
        if first is not None and column.name in first.index:
            candidate = first[column.name]
            value = candidate.item() if isinstance(candidate, np.generic) else candidate
        row.append(value if ACCEPTS[column.kind](value) else _PROBE[column.kind])
    return row
