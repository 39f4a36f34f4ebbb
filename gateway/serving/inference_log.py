"""The inference log: a sample of the scored rows of each endpoint, committed to the store as
Parquet, one commit per window, so what an endpoint saw is a versioned dataset that names the
weights that answered it.

    the data plane, on the event loop          the writer thread
    offer(route, protocol, id, rows) ------->  queue (bounded in rows) -> columns -> open window
      sample each row (p = the endpoint's         (per endpoint, per version and role)
      inference_log_sample); never waits      window over -> sealed: one Parquet file per version
                                                and role -> one commit on branch ENDPOINT of
                                                repository ``inference``, retried while the store
                                                is down (bounded; what cannot be kept is counted)

Serving never waits for the log and never fails because of it: a full queue drops the rows and
counts them (``lockgate_inference_log_rows_total{outcome="dropped"}``). The rows a request hands
over are references to what the request path decoded and answered; they are made columns here,
off the request path.

A graceful stop (``close``: the gateway's shutdown, on SIGTERM) seals every open window and
commits it before the process exits. A crash (SIGKILL, OOM) loses the rows not yet committed:
at most the open window and the queue; the store itself stays consistent, because a commit is
all or nothing.

Files are ``windows/<start>/<version>-<role>-<replica>-<n>.parquet``: ``replica`` is this
process (host and pid), ``n`` counts its files, so replicas and late rows never overwrite a file.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from gateway.serving.answer_horizon import AnswerHorizon
from gateway.serving.logged_rows import PREDICTION, LoggedRows, input_columns, output_columns
from monitoring.inference_log_metrics import InferenceLogMetrics
from monitoring.live_score import LiveQuality
from store import Store
from store.errors import BackendError, RefConflictError, StoreError

if TYPE_CHECKING:
    from gateway.serving.data_plane import Route

INFERENCE_REPO: Final = "inference"
META_COLUMNS: Final = (
    "lockgate_request_id",
    "lockgate_row",
    "lockgate_time",
    "lockgate_protocol",
    "lockgate_role",
    "lockgate_model_version",
    "lockgate_weights_commit",
)
_TRANSIENT = (BackendError, RefConflictError, OSError)  # the store is down or busy: retry later
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Offered:
    endpoint: str
    window: float
    at: float
    protocol: str
    role: str
    version: str
    weights_commit: str
    request_id: str
    keep: np.ndarray | None  # the sampled rows' indices; None: every row
    logged: LoggedRows

    @property
    def kept(self) -> int:
        return self.logged.rows if self.keep is None else len(self.keep)


@dataclass(frozen=True, slots=True)
class Label:
    """One piece of ground truth: the answer it is for (request id, row) and its true value."""

    request_id: str
    row: int
    label: Any


@dataclass
class _Part:
    """The rows of one version and role in one window (or its labels), as columns of the entries
    that made it."""

    pieces: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    rows: int = 0


@dataclass
class _Window:
    endpoint: str
    start: float
    end: float
    parts: dict[tuple[str, str], _Part] = field(default_factory=dict)
    rows: int = 0
    oldest: float = math.inf


@dataclass
class _Sealed:
    endpoint: str
    start: float
    end: float
    files: list[tuple[str, bytes]]
    rows: int
    oldest: float
    versions: list[str]
    attempts: int = 0
    next_try: float = 0.0
    in_flight: bool = False  # the committer is writing it now


class InferenceLog:
    def __init__(
        self,
        open_store: Callable[[], Store],
        metrics: InferenceLogMetrics,
        *,
        quality: LiveQuality | None = None,
        horizon: AnswerHorizon | None = None,
        max_queue_rows: int = 200_000,
        max_buffered_rows: int = 2_000_000,
        tick_seconds: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_store = open_store
        self._metrics = metrics
        self.quality = quality
        self.horizon = horizon or AnswerHorizon()
        self._drain_lock = threading.Lock()  # the writer thread and a feedback call both drain
        self._max_queue_rows = max_queue_rows
        # Rows in open and sealed windows not committed yet: what an outage may hold in memory.
        self._max_buffered_rows = max_buffered_rows
        self._tick = tick_seconds
        self._clock = clock
        self._random = random.Random()
        self._rng = np.random.default_rng()
        self._replica = f"{_safe(socket.gethostname())}-{os.getpid()}"
        self._lock = threading.Lock()
        self._queue: list[_Offered] = []
        self._queued_rows = 0
        self._windows: dict[tuple[str, float], _Window] = {}
        # The writer thread seals, the committer thread commits: a store that hangs holds up
        # commits only, never the draining of the queue (or the gauges that show the hang).
        self._sealed_lock = threading.Lock()
        self._sealed: list[_Sealed] = []
        self._buffered_rows = 0
        self._files = 0
        self._lagging: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._committer: threading.Thread | None = None

    # -- the request path ---------------------------------------------------------------------

    def offer(self, route: Route, protocol: str, request_id: str, logged: LoggedRows) -> None:
        """Sample ``logged``'s rows and queue the chosen ones. On the event loop: never waits."""
        options = route.deployment.options
        share, rows, name = options.inference_log_sample, logged.rows, route.name
        if rows <= 0 or share <= 0:
            return
        keep: np.ndarray | None = None
        if share < 1:
            if rows == 1:
                if self._random.random() >= share:
                    self._metrics.count(name, "sampled_out", 1)
                    return
            else:
                keep = np.flatnonzero(self._rng.random(rows) < share)
                self._metrics.count(name, "sampled_out", rows - len(keep))
                if not len(keep):
                    return
        deployment = route.deployment
        entry = _Offered(name, options.inference_log_window, self._clock(), protocol, str(route.role),
                         deployment.version_label, deployment.resolved.weights_commit or "none", request_id, keep,
                         logged)  # fmt: skip
        kept = entry.kept
        with self._lock:
            if self._queued_rows + kept > self._max_queue_rows:
                full = True
            else:
                full = False
                self._queue.append(entry)
                self._queued_rows += kept
        if full:
            self._metrics.count(name, "dropped", kept)
        elif self._thread is None:
            self.start()

    # -- the writer thread --------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
            self._committer = threading.Thread(target=self._commit_loop, name="inference-log-commit", daemon=True)
        self._thread.start()
        self._committer.start()

    def close(self, timeout: float = 15.0) -> None:
        """Seal every open window and commit it (within ``timeout`` seconds while the store is
        down); rows that still cannot be committed are counted as dropped. Blocking."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._committer is not None:  # it may be inside a commit the store is slow to answer
            self._committer.join(timeout=max(0.0, deadline - time.monotonic()))
        self._drain()
        with self._drain_lock:
            self._seal(math.inf)
        while self._pending() and time.monotonic() < deadline:
            self._commit_due(force=True)
            if self._pending():
                time.sleep(0.2)
        with self._sealed_lock:
            left, self._sealed = self._sealed, []
        for sealed in left:
            self._metrics.count(sealed.endpoint, "dropped", sealed.rows)
            _log.error("inference log: %d row(s) of %s not committed at shutdown", sealed.rows, sealed.endpoint)
        self._update_gauges()

    def _pending(self) -> bool:
        with self._sealed_lock:
            return bool(self._sealed)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._drain()
                with self._drain_lock:  # a feedback call adds to the windows too
                    self._seal(self._clock())
                    self._update_gauges()
            except Exception:  # the log must never die; whatever failed is counted where it failed
                _log.exception("inference log")

    def _commit_loop(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._commit_due()
            except Exception:
                _log.exception("inference log commit")

    # -- feedback -----------------------------------------------------------------------------

    def feedback(self, endpoint: str, window: float, labels: Sequence[Label]) -> tuple[int, int]:
        """Join ``labels`` to the answers remembered, score the matched ones, and queue every label
        for the log. Returns (matched, unmatched). Blocking (call it off the event loop)."""
        self._drain()  # answers given a moment ago are in the queue still
        matched = 0
        now = self._clock()
        found_rows: list[bool] = []
        for label in labels:
            found = self.horizon.find(endpoint, label.request_id, label.row)
            found_rows.append(found is not None)
            if found is None:
                continue
            matched += 1
            if self.quality is not None:
                version, role, answer = found
                self.quality.add(endpoint, version, role, answer, label.label)
        unmatched = len(labels) - matched
        if self.quality is not None:
            self.quality.labels.labels(endpoint, "matched").inc(matched)
            self.quality.labels.labels(endpoint, "unmatched").inc(unmatched)
            self.quality.publish(endpoint)
        if labels:
            values = [label.label for label in labels]
            if len({type(v) for v in values}) > 1:
                values = [str(v) for v in values]  # one column type: mixed labels are kept as text
            columns: dict[str, Any] = {
                "lockgate_request_id": [label.request_id for label in labels],
                "lockgate_row": np.array([label.row for label in labels], dtype=np.int64),
                "lockgate_time": np.full(len(labels), np.datetime64(int(now * 1_000_000), "us")),
                "lockgate_label": values,
                "lockgate_matched": np.array(found_rows, dtype=bool),
            }
            with self._drain_lock:
                self._add(endpoint, window, now, ("labels", "feedback"), columns=columns, rows=len(labels))
        if self._thread is None:
            self.start()
        return matched, len(labels) - matched

    def _drain(self) -> None:
        with self._drain_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        with self._lock:
            batch, self._queue, self._queued_rows = self._queue, [], 0
        for entry in batch:
            kept = entry.kept
            if self._buffered_rows + kept > self._max_buffered_rows:  # an outage filled the buffer
                self._metrics.count(entry.endpoint, "dropped", kept)
                continue
            try:
                columns = _columns_of(entry)
            except Exception as exc:  # rows the log cannot read are counted, never raised to anyone
                _log.warning("inference log: %d row(s) of %s not logged: %s", kept, entry.endpoint, exc)
                self._metrics.count(entry.endpoint, "dropped", kept)
                continue
            answers = columns.get(PREDICTION)
            if answers is not None:
                self.horizon.remember(entry.endpoint, entry.request_id, columns["lockgate_row"],
                                      version=entry.version, role=entry.role, answers=answers)  # fmt: skip
            self._add(entry.endpoint, entry.window, entry.at, ("windows", f"{_safe(entry.version)}-{entry.role}"),
                      columns=columns, rows=kept)  # fmt: skip

    def _add(self, endpoint: str, length: float, at: float, part_key: tuple[str, str], *, columns: dict[str, Any],
             rows: int) -> None:  # fmt: skip
        """Put ``rows`` rows into the window of ``endpoint`` that holds moment ``at``."""
        start = math.floor(at / length) * length
        window = self._windows.get((endpoint, start))
        if window is None:
            window = self._windows[(endpoint, start)] = _Window(endpoint, start, start + length)
        part = window.parts.setdefault(part_key, _Part())
        part.pieces.append((columns, rows))
        part.rows += rows
        window.rows += rows
        window.oldest = min(window.oldest, at)
        with self._sealed_lock:
            self._buffered_rows += rows

    def _seal(self, now: float) -> None:
        """Make every window that is over a set of Parquet files, ready to commit."""
        for key, window in list(self._windows.items()):
            # A second of grace: rows answered just before the end may still be in the queue.
            if window.end + 1.0 > now:
                continue
            del self._windows[key]
            files, written = [], 0
            stamp = datetime.fromtimestamp(window.start, UTC).strftime("%Y%m%dT%H%M%SZ")
            for (folder, prefix), part in window.parts.items():
                self._files += 1
                path = f"{folder}/{stamp}/{prefix}-{self._replica}-{self._files}.parquet"
                try:
                    files.append((path, _parquet(part)))
                    written += part.rows
                except Exception as exc:
                    _log.error("inference log: %d row(s) of %s cannot be written: %s", part.rows, window.endpoint, exc)
                    self._metrics.count(window.endpoint, "dropped", part.rows)
                    with self._sealed_lock:
                        self._buffered_rows -= part.rows
            if files:
                versions = sorted({prefix.rsplit("-", 1)[0] for folder, prefix in window.parts if folder == "windows"})
                sealed = _Sealed(window.endpoint, window.start, window.end, files, written, window.oldest, versions)
                with self._sealed_lock:
                    self._sealed.append(sealed)

    def _commit_due(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._sealed_lock:
            due = [s for s in self._sealed if not s.in_flight and (force or s.next_try <= now)]
            for sealed in due:
                sealed.in_flight = True
        for sealed in due:
            try:
                self._commit(sealed)
            except _TRANSIENT as exc:
                sealed.attempts += 1
                sealed.next_try = now + min(30.0, 0.5 * 2**sealed.attempts)
                self._metrics.commits.labels(sealed.endpoint, "retry").inc()
                if sealed.attempts in (1, 10) or sealed.attempts % 100 == 0:
                    _log.warning("inference log: %d row(s) of %s wait, the store refused: %s", sealed.rows,
                                 sealed.endpoint, exc)  # fmt: skip
                sealed.in_flight = False
                continue
            except StoreError as exc:  # not an outage: these files can never be written
                _log.error("inference log: %d row(s) of %s cannot be committed: %s", sealed.rows, sealed.endpoint, exc)
                self._metrics.count(sealed.endpoint, "dropped", sealed.rows)
            else:
                self._metrics.count(sealed.endpoint, "logged", sealed.rows)
                self._metrics.commits.labels(sealed.endpoint, "ok").inc()
            with self._sealed_lock:
                self._sealed.remove(sealed)
                self._buffered_rows -= sealed.rows

    def _commit(self, sealed: _Sealed) -> None:
        start = datetime.fromtimestamp(sealed.start, UTC).isoformat()
        end = datetime.fromtimestamp(sealed.end, UTC).isoformat()
        store = self._open_store()
        # A garbage collection holding the store is an outage like any other: retried later.
        store.commit_files(
            INFERENCE_REPO,
            sealed.endpoint,
            sealed.files,
            message=f"inference log: {sealed.endpoint}, {sealed.rows} row(s), {start} to {end}",
            author="lockgate-gateway",
            metadata={"lockgate.window_start": start, "lockgate.window_end": end, "lockgate.rows": str(sealed.rows),
                      "lockgate.versions": ",".join(sealed.versions), "lockgate.replica": self._replica},
            gc_wait=2.0,
        )  # fmt: skip

    def _update_gauges(self) -> None:
        now = self._clock()
        oldest: dict[str, float] = {}
        with self._sealed_lock:
            held: list[_Window | _Sealed] = [*self._windows.values(), *self._sealed]
        for item in held:
            oldest[item.endpoint] = min(oldest.get(item.endpoint, math.inf), item.oldest)
        self._lagging |= set(oldest)  # an endpoint whose rows are all committed shows 0, not its last lag
        for endpoint in self._lagging:
            first = oldest.get(endpoint)
            self._metrics.commit_lag.labels(endpoint).set(0.0 if first is None else max(0.0, now - first))
        self._metrics.pending_rows.set(self._buffered_rows + self._queued_rows)


def _columns_of(entry: _Offered) -> dict[str, Any]:
    """An entry's sampled rows as columns: the meta columns, its inputs, its predictions."""
    logged, rows = entry.logged, entry.logged.rows
    data = input_columns(logged.inputs(), rows)
    data.update(output_columns(logged.outputs(), rows))
    index = np.arange(rows, dtype=np.int64) if entry.keep is None else entry.keep.astype(np.int64)
    if entry.keep is not None:
        data = {name: _take(values, entry.keep) for name, values in data.items()}
    kept = len(index)
    moment = np.datetime64(int(entry.at * 1_000_000), "us")
    meta: dict[str, Any] = {
        "lockgate_request_id": [entry.request_id] * kept,
        "lockgate_row": index,
        "lockgate_time": np.full(kept, moment),
        "lockgate_protocol": [entry.protocol] * kept,
        "lockgate_role": [entry.role] * kept,
        "lockgate_model_version": [entry.version] * kept,
        "lockgate_weights_commit": [entry.weights_commit] * kept,
    }
    return {**meta, **data}


def _take(values: Any, keep: np.ndarray) -> Any:
    if isinstance(values, list):
        return [values[i] for i in keep]
    return values[keep]


def _parquet(part: _Part) -> bytes:
    """One Parquet file of a part's rows: each column joined across its entries (a column an
    entry lacks, say an output only some requests asked for, is null there)."""
    names: dict[str, None] = {}
    for columns, _rows in part.pieces:
        names.update(dict.fromkeys(columns))
    data: dict[str, Any] = {}
    for name in names:
        pieces: list[Any] = [columns[name] if name in columns else [None] * rows for columns, rows in part.pieces]
        if all(isinstance(p, np.ndarray) and p.dtype != object for p in pieces):
            data[name] = np.concatenate(pieces)
        else:
            data[name] = list(chain.from_iterable(_as_list(p) for p in pieces))
    frame = pd.DataFrame(data, copy=False)
    frame["lockgate_time"] = pd.to_datetime(frame["lockgate_time"]).dt.tz_localize("UTC")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray):
        return list(values.tolist())
    return list(values)


def _safe(text: str) -> str:
    """A name fit for a store path: letters, digits, '.', '_', '-'."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)
    return cleaned.strip(".-") or "x"
