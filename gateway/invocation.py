"""A prediction through MLflow's scoring protocol, from body to response, for one endpoint:

    read the body (bounded) -> lean path: parse -> batch -> predict -> encode MLflow's bytes
                            -> otherwise: refuse hostile bodies -> MLflow's own scoring code

The lean path is taken only for what it covers exactly (plain JSON, the signature's numeric
columns); everything else, and any error on the lean path, goes through MLflow's code against
the same model, so answers and errors are MLflow's. Every request is served entirely by the one
deployment it found when it arrived (its in-flight count keeps that deployment from draining).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.decode_pool import DecodePool
from gateway.deployer import Deployer
from gateway.endpoints import Deployment
from gateway.errors import BadRequestError, EndpointNotReadyError, RequestTooLargeError
from gateway.fast_request import is_plain_json
from gateway.prediction_json import predictions_json
from gateway.request_guard import check_body
from gateway.scoring import score
from gateway.shadow import ShadowCopy, ShadowMirror
from gateway.traffic_policy import PRIMARY, choose, role_headers, route_key_of
from monitoring.serving_metrics import ServingMetrics

# Small bodies parse in microseconds on the event loop; a big one would hold it, so it moves.
LEAN_INLINE_BYTES = 32 * 1024


class ShadowAnswerError(Exception):
    """The shadow answered a copied request with an error status."""


class Invoker:
    def __init__(
        self,
        deployer: Deployer,
        metrics: ServingMetrics,
        *,
        max_body_bytes: int,
        timeout: float,
        decode_pool: DecodePool,
        mirror: ShadowMirror | None = None,
    ) -> None:
        self._deployer = deployer
        self._decode_pool = decode_pool
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._timeout = timeout
        self._mirror = mirror

    async def invoke(self, name: str, request: Request) -> Response:
        endpoint = self._deployer.get(name)
        # The traffic policy picks the deployment once; the whole request is served by it.
        deployment, role = choose(endpoint, route_key_of(request.headers))
        if deployment is None:
            raise EndpointNotReadyError(
                f"endpoint {name!r} has no loaded model yet: {endpoint.last_error or endpoint.status}"
            )
        metrics = self._metrics
        started = time.perf_counter()
        version = deployment.version_label
        metrics.inflight.labels(name).inc()
        deployment.inflight += 1
        try:
            # The body is read under the request timeout too: a client that trickles it answers 504.
            async with asyncio.timeout(self._timeout):
                body = await self._read_body(request)
                content_type = request.headers.get("content-type")
                fast = await self._lean(deployment, body, content_type)
                if fast is not None:
                    predictions, predict_seconds = fast
                    payload = predictions_json(predictions)
                    metrics.observe_predict(name, version, len(predictions), predict_seconds, role)
                    metrics.observe_request(name, version, 200, time.perf_counter() - started, None, role=role)
                    if endpoint.shadow is not None and role == PRIMARY:
                        self._mirror_copy(name, body, content_type, lambda: predictions)
                    return Response(
                        content=payload,
                        status_code=200,
                        media_type="application/json",
                        headers=role_headers(deployment, role),
                    )
                payload, status, media_type, observed = await asyncio.to_thread(
                    _guarded_score, deployment, body, content_type
                )
        except TimeoutError:
            metrics.observe_request(name, version, 504, time.perf_counter() - started, "REQUEST_TIMEOUT", role=role)
            return Response(
                content="Request processing time exceeded limit", status_code=504, media_type="application/json"
            )
        except (RequestTooLargeError, BadRequestError) as exc:
            metrics.observe_request(name, version, exc.status, time.perf_counter() - started, exc.error_code, role=role)
            raise
        finally:
            deployment.inflight -= 1
            metrics.inflight.labels(name).dec()
        error_code = None
        if status == 200:
            metrics.observe_predict(name, version, observed.rows, observed.predict_seconds, role)
            if endpoint.shadow is not None and role == PRIMARY:
                self._mirror_copy(name, body, content_type, lambda: decoded_predictions(payload))
        else:
            error_code = _error_code_of(payload, media_type, status)
        metrics.observe_request(name, version, status, time.perf_counter() - started, error_code, role=role)
        return Response(
            content=payload, status_code=status, media_type=media_type, headers=role_headers(deployment, role)
        )

    async def _read_body(self, request: Request) -> bytes:
        return await read_body(request, self._max_body_bytes)

    def _mirror_copy(self, name: str, body: bytes, content_type: str | None, primary: Any) -> None:
        if self._mirror is None:
            return

        async def run(shadow: Deployment) -> Any:
            return await self._answer(shadow, body, content_type)

        self._mirror.offer(name, ShadowCopy(run, primary, len(body)))

    async def _answer(self, deployment: Deployment, body: bytes, content_type: str | None) -> Any:
        """A copied request's predictions on ``deployment`` (a shadow), through the same two paths."""
        fast = await self._lean(deployment, body, content_type)
        if fast is not None:
            return fast[0]
        payload, status, _media_type, _observed = await asyncio.to_thread(
            _guarded_score, deployment, body, content_type
        )
        if status != 200:
            raise ShadowAnswerError(f"status {status}: {payload[:200]!r}")
        return decoded_predictions(payload)

    async def _lean(self, deployment: Deployment, body: bytes, content_type: str | None) -> tuple[Any, float] | None:
        """Predictions through the lean path, or None when the request needs MLflow's code."""
        parser, batcher = deployment.parser, deployment.batcher
        if parser is None or batcher is None or not is_plain_json(content_type):
            return None
        if len(body) <= LEAN_INLINE_BYTES:
            matrix = parser.parse(body)
        else:
            matrix = await self._decode_pool.run(parser.parse, body)
        if matrix is None:
            return None
        try:
            return await batcher.predict(matrix)
        except Exception:
            # MLflow's code, on the same model, gives this request MLflow's exact error.
            return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(
            f"request body of {int(declared):,} bytes exceeds the {limit:,}-byte limit (LOCKGATE_MAX_BODY_BYTES)"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise RequestTooLargeError(f"request body exceeds the {limit:,}-byte limit (LOCKGATE_MAX_BODY_BYTES)")
    return bytes(body)


def _guarded_score(deployment: Deployment, body: bytes, content_type: str | None) -> Any:
    # In the worker thread: refusing a hostile body costs one orjson parse, not the event loop.
    check_body(body, content_type, deployment.max_columns)
    return score(deployment, body, content_type)


def decoded_predictions(payload: bytes) -> Any:
    """The ``predictions`` of an MLflow answer (the whole document when it has none). MLflow
    writes NaN, which orjson refuses: the standard library reads it."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = json.loads(payload)
    return document["predictions"] if isinstance(document, dict) and "predictions" in document else document


def _error_code_of(payload: bytes, media_type: str, status: int) -> str:
    """The MLflow error_code of an error response (415s are plain text in MLflow)."""
    if media_type == "application/json":
        try:
            return str(orjson.loads(payload).get("error_code", "UNKNOWN"))
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return "UNSUPPORTED_MEDIA_TYPE" if status == 415 else "UNKNOWN"
