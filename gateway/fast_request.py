"""Lean request parsing: a JSON body straight to a float64 matrix, without pandas.

It covers the common case exactly: ``dataframe_split`` (``columns`` and ``data`` only) or
``dataframe_records``, with exactly the signature's columns (any order) and only numbers, for
a model whose inputs are all ``double``. Anything else (params, an index, a missing or extra
column, a string, a null, a boolean, NaN, an empty frame, CSV) returns None, and the request
goes through MLflow's own parser, which produces MLflow's exact answer or error. So the fast
path can only ever agree with ``mlflow models serve``; it never has to imitate its errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

_JSON = "application/json"


def is_plain_json(content_type: str | None) -> bool:
    """Whether MLflow's scoring server would parse this body as JSON, read exactly as it reads
    the header: the media type is case-sensitive, the only parameter allowed is ``charset``
    (case-sensitive name) and its value must be utf-8 (any case). Anything else goes to
    MLflow's own code, which gives MLflow's own answer (a 415 for ``APPLICATION/JSON``)."""
    if content_type is None:
        return False
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    if media_type != _JSON:
        return False
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key != "charset" or value.lower() != "utf-8":
            return False
    return True


class NumericFrameParser:
    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._names = list(columns)
        self._name_set = frozenset(columns)

    def parse(self, body: bytes) -> np.ndarray | None:
        # Booleans would silently become 0.0/1.0 in numpy; MLflow rejects them. A column name
        # containing these words merely sends the request the slow way.
        if b"true" in body or b"false" in body:
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # MLflow's parser has the exact error (or accepts NaN, which JSON lacks)
        if type(document) is not dict or len(document) != 1:
            return None
        if "dataframe_split" in document:
            return self._split(document["dataframe_split"])
        if "dataframe_records" in document:
            return self._records(document["dataframe_records"])
        return None

    def _split(self, split: Any) -> np.ndarray | None:
        if type(split) is not dict or len(split) != 2:
            return None
        columns, data = split.get("columns"), split.get("data")
        if type(columns) is not list or type(data) is not list or not data:
            return None
        if columns == self._names:
            order = None
        elif len(columns) == len(self._names) and frozenset(columns) == self._name_set:
            order = [columns.index(name) for name in self._names]
        else:
            return None
        matrix = _numeric_matrix(data, len(columns))
        if matrix is None or order is None:
            return matrix
        return np.ascontiguousarray(matrix[:, order])

    def _records(self, records: Any) -> np.ndarray | None:
        if type(records) is not list or not records:
            return None
        width = len(self._names)
        try:
            if any(len(record) != width for record in records):
                return None
            rows = [[record[name] for name in self._names] for record in records]
        except (KeyError, TypeError):
            return None
        return _numeric_matrix(rows, width)


def _numeric_matrix(rows: list[Any], width: int) -> np.ndarray | None:
    try:
        matrix = np.array(rows)
    except (ValueError, TypeError):
        return None  # ragged rows
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "iuf":
        return None  # strings, nulls, nested values, huge integers
    return matrix.astype(np.float64, copy=False)
