"""Lean request parsing for all-``double`` signatures: a JSON body straight to a float64 matrix,
without pandas.

The rows come from ``SignatureRows`` (the plain forms only). A value that is not a number (a
string, a null, a boolean, a huge integer) returns None, and the request goes through MLflow's
own parser, which produces MLflow's exact answer or error. So the fast path can only ever agree
with ``mlflow models serve``; it never has to imitate its errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lockgate.gateway.serving.lean_document import SignatureRows, is_plain_json

__all__ = ["NumericFrameParser", "is_plain_json"]


class NumericFrameParser:
    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._rows = SignatureRows(columns)

    def parse(self, body: bytes) -> np.ndarray | None:
        # Booleans would silently become 0.0/1.0 in numpy; MLflow rejects them. A column name
        # containing these words merely sends the request the slow way.
        if b"true" in body or b"false" in body:
            return None
        rows = self._rows.rows(body)
        return None if rows is None else _numeric_matrix(rows, len(self.columns))


def _numeric_matrix(rows: list[Any], width: int) -> np.ndarray | None:
    try:
        matrix = np.array(rows)
    except (ValueError, TypeError):
        return None  # ragged rows
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "iuf":
        return None  # strings, nulls, nested values, huge integers
    return matrix.astype(np.float64, copy=False)
