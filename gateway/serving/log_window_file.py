"""The inference log's rows as they wait and as they are written: ``Offered`` (one answered
request's sampled rows, references only), ``Part`` (one version and role's rows in a window), and
the Parquet file a part becomes when its window is sealed.

Lean-path requests (a float64 matrix and 1-D answers, every row kept) are stacked: thousands of
requests become columns in one ``np.concatenate`` each. Every other request is made columns on
its own (``input_columns``/``output_columns``), and the two are joined.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lockgate.gateway.serving.logged_rows import PREDICTION, LoggedRows, input_columns, output_columns, row_values

if TYPE_CHECKING:
    from lockgate.gateway.serving.data_plane import Route

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Offered:
    """One answered request's sampled rows, as the request path queued them (references only)."""

    route: Route
    protocol: str
    request_id: str
    logged: LoggedRows
    keep: np.ndarray | None  # the sampled rows' indices; None: every row
    at: float

    @property
    def kept(self) -> int:
        return self.logged.rows if self.keep is None else len(self.keep)


@dataclass
class Part:
    """The rows of one version and role in one window (or its labels): the queued requests, made
    columns all at once when the window is sealed, and rows that came as columns (labels)."""

    entries: list[Offered] = field(default_factory=list)
    pieces: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    rows: int = 0


def answers_of(entry: Offered, keys: list[tuple[str, int]], values: list[Any]) -> None:
    """Add an entry's (request id, row) and answer, per sampled row, for the feedback join."""
    logged, rid = entry.logged, entry.request_id
    predictions = logged.predictions
    if predictions is None:
        found = logged.output_data().get("predict")
        if found is None:
            return
        predictions = np.asarray(row_values(found, logged.rows, "predict"), dtype=object)
    rows = range(logged.rows) if entry.keep is None else entry.keep.tolist()
    answers = predictions.tolist() if entry.keep is None else predictions[entry.keep].tolist()
    keys.extend((rid, row) for row in rows)
    values.extend(answers)


def _meta(entries: list[Offered], counts: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """The ``lockgate_`` columns of ``entries``: each value repeated over its entry's rows."""

    def each(values: list[Any]) -> np.ndarray:
        return np.repeat(np.array(values, dtype=object), counts)

    moments = np.array([entry.at for entry in entries]) * 1_000_000
    deployments = [entry.route.deployment for entry in entries]
    return {
        "lockgate_request_id": each([entry.request_id for entry in entries]),
        "lockgate_row": rows,
        "lockgate_time": np.repeat(moments.astype(np.int64), counts).astype("datetime64[us]"),
        "lockgate_protocol": each([entry.protocol for entry in entries]),
        "lockgate_role": each([str(entry.route.role) for entry in entries]),
        "lockgate_model_version": each([d.version_label for d in deployments]),
        "lockgate_weights_commit": each([d.resolved.weights_commit or "none" for d in deployments]),
    }


def _stacked(entries: list[Offered], names: tuple[str, ...]) -> pd.DataFrame:
    """Lean-path requests (every row kept): their matrices stacked and their answers joined in
    one call each, whatever the number of requests."""
    counts = np.fromiter((entry.logged.rows for entry in entries), np.int64, len(entries))
    starts = np.cumsum(counts) - counts
    rows = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    data = _meta(entries, counts, rows)
    matrix = np.concatenate([entry.logged.matrix for entry in entries if entry.logged.matrix is not None])
    data.update({name: matrix[:, j] for j, name in enumerate(names)})
    data[PREDICTION] = np.concatenate([e.logged.predictions for e in entries if e.logged.predictions is not None])
    return pd.DataFrame(data, copy=False)


def _columns_of(entry: Offered) -> dict[str, Any]:
    """An entry's sampled rows as columns, one request at a time (every path that is not the lean
    numeric one): the meta columns, its inputs, its predictions."""
    logged, rows = entry.logged, entry.logged.rows
    data = input_columns(logged.input_data(), rows)
    data.update(output_columns(logged.output_data(), rows))
    index = np.arange(rows, dtype=np.int64) if entry.keep is None else entry.keep.astype(np.int64)
    if entry.keep is not None:
        data = {name: _take(values, entry.keep) for name, values in data.items()}
    meta = _meta([entry], np.array([len(index)]), index)
    return {**meta, **data}


def _take(values: Any, keep: np.ndarray) -> Any:
    if isinstance(values, list):
        return [values[i] for i in keep]
    return values[keep]


def _joined(pieces: list[tuple[dict[str, Any], int]]) -> pd.DataFrame:
    """Rows that are columns already, joined (a column a piece lacks is null there)."""
    names: dict[str, None] = {}
    for columns, _rows in pieces:
        names.update(dict.fromkeys(columns))
    data: dict[str, Any] = {}
    for name in names:
        parts: list[Any] = [columns[name] if name in columns else [None] * rows for columns, rows in pieces]
        if all(isinstance(p, np.ndarray) and p.dtype != object for p in parts):
            data[name] = np.concatenate(parts)
        else:
            data[name] = list(chain.from_iterable(_as_list(p) for p in parts))
    return pd.DataFrame(data, copy=False)


def parquet_of(part: Part) -> tuple[bytes | None, int]:
    """One Parquet file of a part's rows, and how many rows could not be read (counted as dropped).
    Lean-path requests are stacked; the others are made columns one by one."""
    frames = []
    stacked: dict[tuple[str, ...], list[Offered]] = {}
    pieces = list(part.pieces)
    unreadable = 0
    for entry in part.entries:
        logged = entry.logged
        if entry.keep is None and logged.matrix is not None and logged.predictions is not None:
            stacked.setdefault(logged.names, []).append(entry)
            continue
        try:
            pieces.append((_columns_of(entry), entry.kept))
        except Exception as exc:  # rows the log cannot read are counted, never raised to anyone
            _log.warning("inference log: %d row(s) of %s not logged: %s", entry.kept, entry.route.name, exc)
            unreadable += entry.kept
    frames += [_stacked(entries, names) for names, entries in stacked.items()]
    if pieces:
        frames.append(_joined(pieces))
    if not frames:
        return None, unreadable
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame["lockgate_time"] = pd.to_datetime(frame["lockgate_time"]).dt.tz_localize("UTC")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue(), unreadable


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray):
        return list(values.tolist())
    return list(values)
