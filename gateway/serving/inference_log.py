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

import logging
import math
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lockgate.gateway.serving.answer_horizon import AnswerHorizon
from lockgate.gateway.serving.log_window_file import Offered, Part, answers_of, parquet_of
from lockgate.gateway.serving.logged_rows import LoggedRows
from lockgate.monitoring.inference_log_metrics import InferenceLogMetrics
from lockgate.monitoring.live_score import LiveQuality
from lockgate.store import Store
from lockgate.store.errors import BackendError, RefConflictError, StoreError

if TYPE_CHECKING:
    from lockgate.gateway.serving.data_plane import Route

INFERENCE_REPO: Final = "inference"
_TRANSIENT = (BackendError, RefConflictError, OSError)  # the store is down or busy: retry later
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Label:
    """One piece of ground truth: the answer it is for (request id, row) and its true value."""

    request_id: str
    row: int
    label: Any


@dataclass
class _Window:
    endpoint: str
    start: float
    end: float
    parts: dict[tuple[str, str], Part] = field(default_factory=dict)
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
        # The request path appends, the writer pops (a deque is safe for that without a lock);
        # each counter has one writer, so their difference is the rows waiting.
        self._queue: deque[Offered] = deque()
        self._offered_rows = 0
        self._drained_rows = 0
        self._names: dict[str, str] = {}  # version label -> its file-name form
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
        kept = rows if keep is None else len(keep)
        if self._offered_rows - self._drained_rows + kept > self._max_queue_rows:
            self._metrics.count(name, "dropped", kept)
            return
        self._queue.append(Offered(route, protocol, request_id, logged, keep, self._clock()))
        self._offered_rows += kept
        if self._thread is None:
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
        """Move the queued requests into their windows (still references: columns are made when a
        window is sealed, thousands of requests at once) and remember their answers for feedback."""
        queue, batch = self._queue, []
        while queue:
            batch.append(queue.popleft())
        self._drained_rows += sum(entry.kept for entry in batch)
        answers: dict[tuple[str, str, str], tuple[list[tuple[str, int]], list[Any]]] = {}
        for entry in batch:
            kept, route = entry.kept, entry.route
            if self._buffered_rows + kept > self._max_buffered_rows:  # an outage filled the buffer
                self._metrics.count(route.name, "dropped", kept)
                continue
            deployment = route.deployment
            version, role = deployment.version_label, str(route.role)
            keys, values = answers.setdefault((route.name, version, role), ([], []))
            try:
                answers_of(entry, keys, values)
            except Exception as exc:  # an answer the log cannot read is not remembered; its rows are still logged
                _log.debug("inference log: answers of %s not remembered: %s", entry.request_id, exc)
            name = self._names.get(version)
            if name is None:
                name = self._names[version] = _safe(version)
            window = self._window_of(route.name, deployment.options.inference_log_window, entry.at)
            part = window.parts.setdefault(("windows", f"{name}-{role}"), Part())
            part.entries.append(entry)
            self._count_in(window, part, entry.at, kept)
        for (endpoint, version, role), (keys, values) in answers.items():
            if keys:
                self.horizon.remember(endpoint, keys, values, version=version, role=role)

    def _window_of(self, endpoint: str, length: float, at: float) -> _Window:
        start = math.floor(at / length) * length
        window = self._windows.get((endpoint, start))
        if window is None:
            window = self._windows[(endpoint, start)] = _Window(endpoint, start, start + length)
        return window

    def _count_in(self, window: _Window, part: Part, at: float, rows: int) -> None:
        part.rows += rows
        window.rows += rows
        window.oldest = min(window.oldest, at)
        with self._sealed_lock:
            self._buffered_rows += rows

    def _add(self, endpoint: str, length: float, at: float, part_key: tuple[str, str], *, columns: dict[str, Any],
             rows: int) -> None:  # fmt: skip
        """Put ``rows`` rows, already columns, into the window of ``endpoint`` that holds ``at``."""
        window = self._window_of(endpoint, length, at)
        part = window.parts.setdefault(part_key, Part())
        part.pieces.append((columns, rows))
        self._count_in(window, part, at, rows)

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
                    data, unreadable = parquet_of(part)
                except Exception as exc:
                    _log.error("inference log: %d row(s) of %s cannot be written: %s", part.rows, window.endpoint, exc)
                    data, unreadable = None, part.rows
                if unreadable:
                    self._metrics.count(window.endpoint, "dropped", unreadable)
                    with self._sealed_lock:
                        self._buffered_rows -= unreadable
                if data is not None:
                    files.append((path, data))
                    written += part.rows - unreadable
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
        self._metrics.pending_rows.set(self._buffered_rows + self._offered_rows - self._drained_rows)


def _safe(text: str) -> str:
    """A name fit for a store path: letters, digits, '.', '_', '-'."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)
    return cleaned.strip(".-") or "x"
