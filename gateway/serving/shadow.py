"""Shadow traffic: a copy of each answered primary request goes to the endpoint's shadow, off
the request path, and the two answers are compared.

The request path only offers a copy (``offer``: a non-blocking put on a queue bounded in copies
and in bytes, one per endpoint); when the queue is full the copy is dropped and counted. One worker task per endpoint
runs the copies against whatever deployment is the shadow *when the copy is taken* (so a shadow
that moves, or is dropped, never gets a stale copy), compares its answer with the primary's
(``monitoring.shadow_comparison``) and exports the result (``monitoring.shadow_metrics``). A
shadow's answers never reach a client, and nothing it does (raise, hang, answer another shape)
reaches the request that was copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lockgate.gateway.serving.classifier import probability_model
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.roles import SHADOW
from lockgate.monitoring.errors import ShadowMismatchError
from lockgate.monitoring.shadow_comparison import compare
from lockgate.monitoring.shadow_metrics import ShadowMetrics

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowCopy:
    """One request to replay: ``run`` answers it on a deployment (in the protocol it came in);
    ``primary`` gives the primary's answer, decoded only when the copy is compared."""

    run: Callable[[Deployment], Awaitable[Any]]
    primary: Callable[[], Any]
    size: int = 0  # the request's bytes: what the copy holds while it waits


class ShadowMirror:
    def __init__(
        self,
        shadow_of: Callable[[str], Deployment | None],
        metrics: ShadowMetrics,
        *,
        queue_size: int,
        timeout: float,
        queue_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._shadow_of = shadow_of
        self._metrics = metrics
        self._queue_size = queue_size
        # Bodies may be up to LOCKGATE_MAX_BODY_BYTES each: a count alone would let a thousand
        # waiting copies hold gigabytes. Past this many waiting bytes, copies are dropped too.
        self._queue_bytes = queue_bytes
        self._timeout = timeout
        self._queues: dict[str, asyncio.Queue[ShadowCopy]] = {}
        self._waiting_bytes: dict[str, int] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def offer(self, endpoint: str, copy: ShadowCopy) -> None:
        """Queue ``copy`` for ``endpoint``'s shadow, or drop (and count) it when the queue is full.
        Called on the event loop by the request path: it never waits."""
        queue = self._queues.get(endpoint)
        if queue is None:
            queue = self._queues[endpoint] = asyncio.Queue(self._queue_size)
            self._workers[endpoint] = asyncio.get_running_loop().create_task(self._work(endpoint, queue))
        waiting = self._waiting_bytes.get(endpoint, 0)
        if waiting + copy.size > self._queue_bytes and not queue.empty():
            self._metrics.dropped.labels(endpoint).inc()
            return
        try:
            queue.put_nowait(copy)
        except asyncio.QueueFull:
            self._metrics.dropped.labels(endpoint).inc()
            return
        self._waiting_bytes[endpoint] = waiting + copy.size
        self._metrics.queue_depth.labels(endpoint).set(queue.qsize())

    async def _work(self, endpoint: str, queue: asyncio.Queue[ShadowCopy]) -> None:
        while True:
            copy = await queue.get()
            self._waiting_bytes[endpoint] = max(0, self._waiting_bytes.get(endpoint, 0) - copy.size)
            self._metrics.queue_depth.labels(endpoint).set(queue.qsize())
            deployment = self._shadow_of(endpoint)
            if deployment is None or deployment.closed:
                continue  # the shadow was dropped or moved while this copy waited
            try:
                await self._replay(endpoint, deployment, copy)
            except Exception:  # the worker must outlive any one copy
                _log.exception("shadow of %s: comparing a copy failed", endpoint)

    async def _replay(self, endpoint: str, deployment: Deployment, copy: ShadowCopy) -> None:
        version = deployment.version_label
        deployment.live.inflight += 1  # a swap of the shadow drains this copy like a request
        try:
            async with asyncio.timeout(self._timeout):
                answer = await copy.run(deployment)
        except Exception as exc:
            self._metrics.outcome(endpoint, version, "error")
            _log.debug("shadow %s version %s failed a copy: %s", endpoint, version, exc)
            return
        finally:
            deployment.live.inflight -= 1
        try:
            comparison = compare(copy.primary(), answer, labels=True if probability_model(deployment) else None)
        except ShadowMismatchError as exc:
            self._metrics.outcome(endpoint, version, "mismatch")
            _log.debug("shadow %s version %s: %s", endpoint, version, exc)
            return
        self._metrics.observe(endpoint, version, comparison)

    # -- deploy events: a shadow version's series end with it ------------------------------------

    def deployed(self, name: str, action: str, deployment: Deployment | None) -> None:
        return None

    def retired(self, name: str, deployment: Deployment, role: str = "primary") -> None:
        if role == SHADOW:
            self._metrics.forget(name, deployment.version_label)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
