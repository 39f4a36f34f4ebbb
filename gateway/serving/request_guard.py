"""Refusing, before MLflow's parser or pandas sees them, request bodies that would cost far more
than any real request: a DataFrame with a million columns, JSON nested deeper than Python's
parser can follow, or integers longer than Python will convert. MLflow's own server answers
these with a 500 after burning seconds of CPU; lockgate answers a 400 at once.

Only MLflow's JSON and CSV bodies are looked at; what passes is handed on untouched, so the
answer for every accepted body is still MLflow's own.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from lockgate.gateway.errors import BadRequestError

_NAMED_KEYS = ("instances", "inputs")


def check_body(body: bytes, content_type: str | None, max_columns: int) -> None:
    """Raise ``BadRequestError`` for a body that is refused; return for everything else."""
    mime_type = (content_type or "").split(";", 1)[0].strip()  # as MLflow: case-sensitive
    if mime_type == "text/csv":
        header = body.split(b"\n", 1)[0]
        columns = header.count(b",") + 1
        if columns > max_columns:
            raise _too_wide(columns, max_columns)
        return
    if mime_type != "application/json":
        return
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson is stricter than MLflow's parser (NaN, Infinity, huge numbers): ask the one
        # MLflow uses, and refuse only what would make it raise something other than its
        # own decode error.
        document = _stdlib_parse(body)
    width = request_width(document)
    if width > max_columns:
        raise _too_wide(width, max_columns)


def _stdlib_parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise BadRequestError(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: the JSON is nested too deeply"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # MLflow's parser gives its own exact error for these
    except ValueError as exc:  # an integer beyond Python's int conversion limit
        raise BadRequestError(
            f"Invalid input. Ensure that input is a valid JSON formatted string. Error: {exc}"
        ) from exc


def request_width(document: Any) -> int:
    """The number of columns a DataFrame built from this document would have (named inputs
    for ``instances``/``inputs``; tensor dimensions are not columns and are not counted)."""
    if type(document) is not dict:
        return 0
    width = 0
    split = document.get("dataframe_split")
    if type(split) is dict:
        columns, data = split.get("columns"), split.get("data")
        width = max(len(columns) if type(columns) is list else 0, _widest(data) if type(data) is list else 0)
    records = document.get("dataframe_records")
    if type(records) is list:
        width = max(width, _widest(records))
    elif type(records) is dict:  # a dict of columns
        width = max(width, len(records))
    for key in _NAMED_KEYS:
        value = document.get(key)
        if type(value) is dict:
            width = max(width, len(value))
        elif type(value) is list:
            width = max(width, max((len(v) for v in value if type(v) is dict), default=0))
    return width


def _widest(rows: list[Any]) -> int:
    return max((len(row) for row in rows if type(row) in (list, dict)), default=0)


def _too_wide(columns: int, limit: int) -> BadRequestError:
    return BadRequestError(
        f"the request has {columns:,} columns; this endpoint accepts at most {limit:,} "
        "(its signature's columns plus LOCKGATE_MAX_EXTRA_COLUMNS)"
    )
