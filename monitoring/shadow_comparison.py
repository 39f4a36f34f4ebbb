"""How a shadow's answer differs from its primary's, row by row: pure maths over arrays.

- Labels (a classifier's classes, or anything that is not a float: ints, strings, bools):
  a row disagrees when any of its values differs.
- Values (a regressor's floats): each row's relative difference, ``|shadow - primary| /
  |primary|`` (the largest over the row's outputs). Equal values are 0, also when both are NaN
  or both are 0; a NaN against a number, or a number against 0, is infinite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.monitoring.errors import ShadowMismatchError


@dataclass(frozen=True)
class Comparison:
    rows: int
    labels: bool
    disagreeing_rows: int  # labels: rows whose label differs; values: rows not exactly equal
    relative_differences: np.ndarray  # values only (empty for labels): one per row


def compare(primary: Any, shadow: Any, *, labels: bool | None = None) -> Comparison:
    """Compare two answers to one request. ``labels`` None: decided by the primary's dtype."""
    a, b = _rows(primary), _rows(shadow)
    if a.shape != b.shape:
        raise ShadowMismatchError(f"the shadow answered shape {b.shape}, the primary {a.shape}")
    as_labels = labels if labels is not None else a.dtype.kind not in "fc"
    if as_labels or a.dtype.kind not in "fciub" or b.dtype.kind not in "fciub":
        differs = np.asarray(a != b, dtype=bool).reshape(len(a), -1).any(axis=1)
        return Comparison(len(a), True, int(differs.sum()), np.empty(0))
    relative = _relative(a.astype(np.float64), b.astype(np.float64)).reshape(len(a), -1).max(axis=1, initial=0.0)
    return Comparison(len(a), False, int((relative > 0).sum()), relative)


def _rows(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return array.reshape(1) if array.ndim == 0 else array


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        relative: np.ndarray = np.abs(b - a) / np.abs(a)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    relative[same] = 0.0
    relative[np.isnan(relative)] = np.inf  # a NaN against a number
    return relative
