"""Rows that sit exactly on, one ulp above and one ulp below every split threshold a model uses,
and on the threshold rounded to float32: where an engine that compares in another precision, or
with ``<`` for ``<=``, sends a row the other way. Each row is a base row (a real one, from the
check rows) with one feature moved."""

from __future__ import annotations

import numpy as np

from lockgate.loader.trees.table import TreeTable

# A bound on the rows the check builds: every threshold of a 1,000-tree, 255-leaf model fits.
MAX_ROWS = 2_000_000


def threshold_values(threshold: float) -> list[float]:
    """On, one float64 ulp above and below, and the float32 value nearest (with its own float32
    neighbours): the values where float32 and float64, ``<`` and ``<=`` part ways."""
    as_float32 = np.float32(threshold)
    values = {
        threshold,
        float(np.nextafter(threshold, np.inf)),
        float(np.nextafter(threshold, -np.inf)),
        float(as_float32),
        float(np.nextafter(as_float32, np.float32(np.inf))),
        float(np.nextafter(as_float32, np.float32(-np.inf))),
    }
    return sorted(v for v in values if np.isfinite(v))


def threshold_rows(table: TreeTable, base_row: np.ndarray, integer_columns: frozenset[int] = frozenset()) -> np.ndarray:
    """One row per (feature, value) around every split of ``table``, on ``base_row``. A column
    the signature types as an integer gets the integers on either side of the threshold."""
    is_split = table.left != np.arange(table.nodes)
    pairs: set[tuple[int, float]] = set()
    for feature, threshold in zip(table.feature[is_split].tolist(), table.threshold[is_split].tolist(), strict=True):
        if feature in integer_columns:
            low = float(np.floor(threshold))
            pairs.update((feature, v) for v in (low - 1, low, low + 1, low + 2))
        else:
            pairs.update((feature, v) for v in threshold_values(float(threshold)))
        if len(pairs) >= MAX_ROWS:
            break
    ordered = sorted(pairs)
    rows = np.tile(np.asarray(base_row, dtype=np.float64), (len(ordered), 1))
    if ordered:
        features = np.array([f for f, _ in ordered], dtype=np.int64)
        rows[np.arange(len(ordered)), features] = [v for _, v in ordered]
    return rows
