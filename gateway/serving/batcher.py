"""Adaptive batching: concurrent requests to one deployment share one predict call.

Requests queue their inputs: feature matrices, or ``TypedRows`` for typed signatures (any
sized input with a ``concat``). One worker task per deployment takes everything that
is queued (up to ``max_rows``), stacks it, runs predict in the deployment's own predict thread
and hands each request its slice of the result. While a predict runs, the next batch gathers
by itself, so under load batches grow with no added delay; at one client there is nothing to
merge and no wait. The worker waits (at most ``max_wait``) only when more requests are known to
be on their way: already in flight on the endpoint but not yet queued.

If a merged predict fails, every request in it is retried alone, so one bad request fails only
itself.

A predict runs in the deployment's predict thread, except one that is measured to be cheaper
than handing it over: a small batch (``INLINE_MAX_ROWS``) runs on the event loop while small
predicts take at most ``INLINE_PREDICT_SECONDS`` (a moving average, so one preempted call does
not flip it). The hand-off (the executor's queue, waking the thread, waking the loop with the
answer) costs 127-145 us of CPU per call on this 2-core machine, about 90 us of it on the loop's
own thread (bench/request_stages.py, "one thread hand-off"; docs/performance.md), while a 1-row
ONNX or tree-engine predict takes 20-90 us:
the loop is held for less time than the hand-off costs. A model that is slower goes back to the
thread after one measured call; a new predict function (``use``) starts in the thread until it
has been measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.gateway import tracing
from lockgate.gateway.tracing import STATE as TRACING
from lockgate.monitoring.predict_sizes import PredictSizes

# ``Any`` input: a float64 matrix or TypedRows; both have len() and a concat.
# A small batch runs on the event loop while small predicts average at most this (see above).
INLINE_PREDICT_SECONDS = 150e-6
INLINE_MAX_ROWS = 64

Predict = Callable[[Any], np.ndarray]
AfterBatch = Callable[[Any, np.ndarray, float], None]
Concat = Callable[[list[Any]], Any]


@dataclass
class _Pending:
    matrix: Any
    future: asyncio.Future[tuple[np.ndarray, float]]
    batch: Any = None  # the span context of the batch that answered it (tracing on)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest_batch_rows: int = 0


class Batcher:
    def __init__(
        self,
        predict: Predict,
        *,
        name: str,
        enabled: bool,
        max_rows: int,
        max_wait_seconds: float,
        inflight: Callable[[], int],
        after_batch: AfterBatch | None = None,
        concat: Concat = np.concatenate,
        sizes: PredictSizes | None = None,
    ) -> None:
        self._predict = predict
        self._concat = concat
        self.enabled = enabled
        self.max_rows = max(1, max_rows)
        self.max_wait_seconds = max(0.0, max_wait_seconds)
        self._inflight = inflight
        self._after_batch = after_batch
        self._sizes = sizes  # every predict call's rows, for lockgate_batch_size_rows
        # One predict thread per deployment: batches form while it is busy.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"predict-{name}")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.stats = BatchStats()
        self.inline_seconds = INLINE_PREDICT_SECONDS
        self._small_seconds: float | None = None  # small batches' predict time (moving average); None: unmeasured

    def use(self, predict: Predict) -> None:
        """Switch the predict function (the ONNX upgrade). The next batch uses it; a batch in
        progress finishes with the old one. One attribute assignment: atomic. The new function
        runs in the predict thread until it has been measured."""
        self._predict = predict
        self._small_seconds = None

    async def predict(self, matrix: Any, span: Any = None) -> tuple[np.ndarray, float]:
        """Predictions for ``matrix`` and the predict seconds of the call that made them.

        Traced, the request's ``predict`` span is opened first and this runs again inside it
        (``span``), to link it to the batch it joins; untraced, one attribute test."""
        if span is None and TRACING.tracer is not None:
            with tracing.child("predict") as opened:
                opened.set_attribute("lockgate.rows", len(matrix))
                return await self.predict(matrix, opened)
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self._executor, self._timed, matrix)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[tuple[np.ndarray, float]] = loop.create_future()
        pending = _Pending(matrix, future)
        self._queue.put_nowait(pending)
        if span is None:
            return await future
        answer = await future
        if pending.batch is not None:
            span.add_link(pending.batch)
        return answer

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=False)

    def _timed(self, matrix: Any) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        predictions = np.asarray(self._predict(matrix))
        seconds = time.perf_counter() - started
        if self._sizes is not None:
            self._sizes.record(len(matrix))
        if len(predictions) != len(matrix):
            raise ValueError(f"the model returned {len(predictions)} predictions for {len(matrix)} rows")
        if self._after_batch is not None:
            self._after_batch(matrix, predictions, seconds)
        return predictions, seconds

    async def _gather(self, first: _Pending) -> list[_Pending]:
        assert self._queue is not None
        batch, rows = [first], len(first.matrix)
        deadline = time.perf_counter() + self.max_wait_seconds
        while rows < self.max_rows:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            elif self._inflight() > len(batch) and time.perf_counter() < deadline:
                # Requests are in flight but not queued yet (still reading or parsing): give them
                # a moment. With a single client this branch never runs.
                try:
                    item = await asyncio.wait_for(self._queue.get(), deadline - time.perf_counter())
                except TimeoutError:
                    break
            else:
                break
            if rows + len(item.matrix) > self.max_rows:
                self._queue.put_nowait(item)  # it goes first in a later batch (order barely matters)
                break
            batch.append(item)
            rows += len(item.matrix)
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(await self._queue.get())
            batch = [p for p in batch if not p.future.done()]  # a timed-out request is not predicted
            if not batch:
                continue
            matrix = batch[0].matrix if len(batch) == 1 else self._concat([p.matrix for p in batch])
            self._record(batch, len(matrix))
            try:
                if TRACING.tracer is None:
                    predictions, seconds = await self._call(loop, matrix)
                else:
                    with tracing.batch_span(len(matrix), len(batch)) as span:
                        for pending in batch:
                            pending.batch = span.get_span_context()
                        predictions, seconds = await self._call(loop, matrix)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                for pending in batch:  # find the culprit: each request alone
                    try:
                        _settle(pending, await self._call(loop, pending.matrix))
                    except Exception as single:
                        _settle(pending, single)
                continue
            start = 0
            for pending in batch:
                end = start + len(pending.matrix)
                _settle(pending, (predictions[start:end], seconds))
                start = end

    async def _call(self, loop: asyncio.AbstractEventLoop, matrix: Any) -> tuple[np.ndarray, float]:
        """One predict call: on the loop when it is small and measured quick, else in the thread."""
        small = len(matrix) <= INLINE_MAX_ROWS
        last = self._small_seconds
        if small and last is not None and last <= self.inline_seconds:
            outcome = self._timed(matrix)
        else:
            outcome = await loop.run_in_executor(self._executor, self._timed, matrix)
        if small:
            # The first measurement stands alone: a slow model is sent back to the thread at once.
            self._small_seconds = outcome[1] if last is None else 0.8 * last + 0.2 * outcome[1]
        return outcome

    def _record(self, batch: list[_Pending], rows: int) -> None:
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.rows += rows
        stats.largest_batch_rows = max(stats.largest_batch_rows, rows)


def _settle(pending: _Pending, outcome: tuple[np.ndarray, float] | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
