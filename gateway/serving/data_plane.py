"""The data plane: every prediction, whatever its protocol, passes through here once.

    a protocol's transport  ->  route(name, version, route key)   the deployment and its role, once
                            ->  serve(route, protocol, work)       in-flight count, timeout, the
                                                                   protocol's decode + predict,
                                                                   every observation, the shadow copy
                            <-  the Answer (or a GatewayError)     for the protocol's codec to encode

MLflow's scoring protocol, V2 over REST and V2 over gRPC each add only a codec (what ``work``
does, and how an answer or an error is written) and a transport. Whatever one protocol observes,
every protocol observes: request and predict metrics, rows per predict call, skew (counted where
the model is called: the batcher, MLflow's scoring path, V2's pyfunc path), the shadow's copy.
Errors are one tree (``gateway/errors.py``); each protocol translates it at its edge.

The whole request is served by the one deployment ``route`` found when it arrived: its in-flight
count keeps a swapped-out version from draining under it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lockgate.gateway import tracing
from lockgate.gateway.errors import EndpointNotReadyError, GatewayError, RequestTimeoutError, VersionNotServingError
from lockgate.gateway.serving.endpoints import Deployment, Endpoint
from lockgate.gateway.serving.logged_rows import LoggedRows
from lockgate.gateway.serving.request_ids import REQUEST_ID_HEADER, request_id_from
from lockgate.gateway.serving.roles import CANARY, PRIMARY, Role
from lockgate.gateway.serving.routing import choose, role_headers
from lockgate.gateway.serving.shadow import ShadowCopy, ShadowMirror
from lockgate.gateway.tracing import STATE as TRACING
from lockgate.monitoring.serving_metrics import ServingMetrics


@dataclass(slots=True)  # not frozen: made per request, and a frozen dataclass costs more to make
class Route:
    """Where one request goes: the endpoint, the deployment that answers it, and its role."""

    name: str
    endpoint: Endpoint
    deployment: Deployment
    role: Role
    request_id: str  # the client's (when valid) or a new one; a V2 body's id may replace it (Answer)
    carrier: Any = None  # where the caller's W3C traceparent is (headers, gRPC metadata), for tracing

    def headers(self) -> dict[str, str]:
        """The lineage, role and request id headers of the answer (a fresh dict: codecs add to it)."""
        headers = role_headers(self.deployment, self.role)
        headers[REQUEST_ID_HEADER] = self.request_id
        return headers

    @property
    def logged(self) -> bool:
        """Whether this version's answers are sampled for the inference log: a codec hands over
        its rows (``Answer.logged``) only then."""
        return self.deployment.options.inference_log_sample > 0

    @property
    def mirrored(self) -> bool:
        """Whether the answer is copied to the endpoint's shadow: a codec builds the copy only then."""
        return self.role == PRIMARY and self.endpoint.shadow is not None


@dataclass(slots=True)
class Answer:
    """What a protocol's work produced. ``result`` is the codec's own (MLflow's response bytes,
    V2's outputs); the rest is what the plane observes."""

    result: Any
    status: int = 200
    rows: int = 0
    predict_seconds: float = 0.0
    error_code: str | None = None  # of an answer with an error status (MLflow's own 4xx)
    shadow: ShadowCopy | None = None  # the copy to replay on the shadow, when the primary answered
    request_id: str | None = None  # an id the request itself carried (V2's ``id``), read while decoding
    logged: LoggedRows | None = None  # what the inference log keeps, when the route is logged


class AnswerLog(Protocol):
    """Where answered rows go to be kept (``gateway.inference_log.InferenceLog``): ``offer``
    is called on the event loop and never waits."""

    def offer(self, route: Route, protocol: str, request_id: str, logged: LoggedRows) -> None: ...


class DataPlane:
    def __init__(
        self,
        find: Callable[[str], Endpoint],
        metrics: ServingMetrics,
        *,
        timeout: float,
        mirror: ShadowMirror | None = None,
        log: AnswerLog | None = None,
    ) -> None:
        # ``find``: the endpoint by name, or EndpointNotFoundError naming the ones there are (the
        # control plane's ``Deployer.get``: the plane reads endpoints and never changes them).
        self._find = find
        self._metrics = metrics
        self.timeout = timeout
        self._mirror = mirror
        self._log = log

    def route(
        self,
        name: str,
        version: str | None = None,
        route_key: str | None = None,
        *,
        split: bool = True,
        request_id: str | None = None,
        carrier: Any = None,
    ) -> Route:
        """The deployment that answers model ``name`` and its role. A request that names a version
        goes to the role serving that version (primary first); one that does not is routed by the
        endpoint's traffic policy (``split``), or to the primary (metadata, readiness).
        ``request_id``: the id the client sent, kept when it follows the rule (``request_ids``).
        ``carrier``: the request's headers or gRPC metadata, where a ``traceparent`` may be.

        Raises ``EndpointNotFoundError`` (404), ``EndpointNotReadyError`` (503) or
        ``VersionNotServingError`` (404)."""
        endpoint = self._find(name)
        primary = endpoint.current
        if primary is None:
            raise EndpointNotReadyError(
                f"endpoint {name!r} has no loaded model yet: {endpoint.last_error or endpoint.status}"
            )
        if version:
            canary = endpoint.canary.current if endpoint.canary is not None else None
            for deployment, role in ((primary, PRIMARY), (canary, CANARY)):
                if deployment is not None and deployment.version_label == version:
                    return Route(name, endpoint, deployment, role, request_id_from(request_id), carrier)
            roles = ((primary, PRIMARY), (canary, CANARY))
            serving = ", ".join(f"{d.version_label} ({role})" for d, role in roles if d)
            raise VersionNotServingError(f"version {version!r} of model {name!r} is not serving (serving: {serving})")
        if not split:
            return Route(name, endpoint, primary, PRIMARY, request_id_from(request_id), carrier)
        deployment, role = choose(endpoint, route_key)
        assert deployment is not None  # the primary is loaded (checked above)
        return Route(name, endpoint, deployment, role, request_id_from(request_id), carrier)

    async def serve(
        self, route: Route, protocol: str, work: Callable[[], Awaitable[Answer]], *, in_span: bool = False
    ) -> Answer:
        """Run ``work`` (the protocol's read, decode and predict) for ``route`` under the request
        timeout, counted in flight, and observe its answer. A ``GatewayError`` is observed with its
        status and raised on for the protocol to write; a timeout is a ``RequestTimeoutError``.

        Traced, the request's span is opened first and this runs again inside it (``in_span``);
        untraced, one attribute test is all tracing costs (no extra coroutine on the way)."""
        if TRACING.tracer is not None and not in_span:
            return await self._serve_traced(route, protocol, work)

        metrics, name, deployment, role = self._metrics, route.name, route.deployment, route.role
        version = deployment.version_label
        series = metrics.answer_series(name, version, protocol, role)
        started = time.perf_counter()
        deployment.live.inflight += 1
        series.inflight.inc()
        try:
            async with asyncio.timeout(self.timeout):
                answer = await work()
        except TimeoutError:
            metrics.observe_request(name, version, 504, time.perf_counter() - started, "REQUEST_TIMEOUT",
                                    protocol=protocol, role=role)  # fmt: skip
            raise RequestTimeoutError(
                f"inference exceeded the {self.timeout:g}-second limit (LOCKGATE_REQUEST_TIMEOUT)"
            ) from None
        except GatewayError as exc:
            metrics.observe_request(name, version, exc.status, time.perf_counter() - started, exc.error_code,
                                    protocol=protocol, role=role)  # fmt: skip
            raise
        finally:
            deployment.live.inflight -= 1
            series.inflight.dec()
        if answer.status != 200:
            metrics.observe_request(name, version, answer.status, time.perf_counter() - started, answer.error_code,
                                    protocol=protocol, role=role)  # fmt: skip
            return answer
        if answer.shadow is not None and self._mirror is not None and route.mirrored:
            self._mirror.offer(name, answer.shadow)
        if answer.logged is not None and self._log is not None:
            self._log.offer(route, protocol, answer.request_id or route.request_id, answer.logged)
        series.answered_after(time.perf_counter() - started, answer.rows, answer.predict_seconds)
        return answer

    async def _serve_traced(self, route: Route, protocol: str, work: Callable[[], Awaitable[Answer]]) -> Answer:
        """``serve`` inside the request's span: every span the work opens is its child."""
        deployment = route.deployment
        resolved = deployment.resolved
        attributes = {
            "lockgate.endpoint": route.name,
            "lockgate.role": str(route.role),
            "lockgate.protocol": protocol,
            "lockgate.request_id": route.request_id,
            "lockgate.serving_path": deployment.serving_path,
            "lockgate.model.name": resolved.name or "",
            "lockgate.model.version": deployment.version_label,
            "lockgate.weights_commit": resolved.weights_commit or "",
            "lockgate.dataset_commit": resolved.dataset_commit or "",
        }
        with tracing.request_span(f"{protocol} {route.name}", route.carrier, attributes) as span:
            try:
                answer = await self.serve(route, protocol, work, in_span=True)
            except GatewayError as exc:
                tracing.fail(span, exc.status, str(exc))
                raise
            span.set_attribute("lockgate.rows", answer.rows)
            span.set_attribute("http.response.status_code", answer.status)
            if answer.status != 200:
                tracing.fail(span, answer.status, answer.error_code or "error")
            return answer
