"""The first step of lean decoding, shared by every lean parser: a JSON body to its rows, in the
signature's column order, or None when the request needs MLflow's own parser.

It takes exactly the plain forms, where MLflow's parser and a direct reading cannot disagree:

- ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (no ``index``);
- ``{"dataframe_records": [{...}, ...]}`` and ``{"instances": [{...}, ...]}`` (MLflow turns
  records-shaped ``instances`` into the same frame);
- ``{"inputs": {"column": [...], ...}}`` (columns of equal length).

Each with exactly the signature's columns, in any order, and at least one row. Anything else
(params, an index, a missing or extra column, an empty frame, a scalar, CSV) returns None.
"""

from __future__ import annotations

from typing import Any

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


class SignatureRows:
    """Reads plain request documents into rows ordered as the signature's columns."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._names = list(columns)
        self._name_set = frozenset(columns)

    def rows(self, body: bytes) -> list[Any] | None:
        """Each row a list in signature order (or, for ``dataframe_split`` in signature order
        already, the request's own lists), or None for anything but the plain forms."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # MLflow's parser has the exact error (or accepts NaN, which JSON lacks)
        if type(document) is not dict or len(document) != 1:
            return None
        key, value = next(iter(document.items()))
        if key == "dataframe_split":
            return self._split(value)
        if key in ("dataframe_records", "instances"):
            return self._records(value)
        if key == "inputs":
            return self._columnar(value)
        return None

    def _split(self, split: Any) -> list[Any] | None:
        if type(split) is not dict or len(split) != 2:
            return None
        columns, data = split.get("columns"), split.get("data")
        if type(columns) is not list or type(data) is not list or not data:
            return None
        width = len(self._names)
        if any(type(row) is not list or len(row) != width for row in data):
            return None
        if columns == self._names:
            return data
        if len(columns) != width or frozenset(columns) != self._name_set:
            return None
        order = [columns.index(name) for name in self._names]
        return [[row[i] for i in order] for row in data]

    def _records(self, records: Any) -> list[Any] | None:
        if type(records) is not list or not records:
            return None
        width = len(self._names)
        try:
            if any(type(record) is not dict or len(record) != width for record in records):
                return None
            return [[record[name] for name in self._names] for record in records]
        except KeyError:
            return None

    def _columnar(self, inputs: Any) -> list[Any] | None:
        if type(inputs) is not dict or len(inputs) != len(self._names) or inputs.keys() != self._name_set:
            return None
        columns = [inputs[name] for name in self._names]
        if any(type(column) is not list for column in columns):
            return None
        length = len(columns[0])
        if length == 0 or any(len(column) != length for column in columns):
            return None
        return [list(row) for row in zip(*columns, strict=True)]
