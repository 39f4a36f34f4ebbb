"""A prediction through MLflow's scoring protocol, from body to response, for one endpoint, as a
codec over the data plane (``gateway/serving/data_plane.py``, which routes, counts, times out and observes):

    read the body (bounded) -> lean path: parse -> batch -> predict -> encode MLflow's bytes
                            -> otherwise: refuse hostile bodies -> MLflow's own scoring code

The lean path is taken only for what it covers exactly (plain JSON, the signature's numeric
columns); everything else, and any error on the lean path, goes through MLflow's code against
the same model, so answers and errors are MLflow's.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway import tracing
from lockgate.gateway.errors import RequestTimeoutError
from lockgate.gateway.serving.data_plane import Answer, DataPlane, Route
from lockgate.gateway.serving.decode_pool import DecodePool
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.fast_request import is_plain_json
from lockgate.gateway.serving.logged_rows import LoggedRows, enforced_inputs, lean_logged, single_output
from lockgate.gateway.serving.prediction_json import predictions_json
from lockgate.gateway.serving.request_body import LEAN_INLINE_BYTES, read_body
from lockgate.gateway.serving.request_guard import check_body
from lockgate.gateway.serving.request_ids import INCOMING_REQUEST_ID_HEADER
from lockgate.gateway.serving.routing import route_key_of
from lockgate.gateway.serving.scoring import score
from lockgate.gateway.serving.shadow import ShadowCopy

MLFLOW_PROTOCOL = "mlflow"  # the `protocol` label of MLflow's scoring protocol


class ShadowAnswerError(Exception):
    """The shadow answered a copied request with an error status."""


class Invoker:
    """MLflow's scoring protocol as a codec over the data plane: the body in, MLflow's exact bytes
    out. The plane routes, counts, times out and observes; this reads and predicts."""

    def __init__(self, plane: DataPlane, *, max_body_bytes: int, decode_pool: DecodePool) -> None:
        self._plane = plane
        self._max_body_bytes = max_body_bytes
        self._decode_pool = decode_pool

    async def invoke(self, name: str, request: Request) -> Response:
        # The traffic policy picks the deployment once; the whole request is served by it.
        headers = request.headers
        route = self._plane.route(
            name, None, route_key_of(headers), request_id=headers.get(INCOMING_REQUEST_ID_HEADER), carrier=headers
        )
        try:
            answer = await self._plane.serve(route, MLFLOW_PROTOCOL, partial(self._answer, route, request))
        except RequestTimeoutError:
            return Response(
                content="Request processing time exceeded limit", status_code=504, media_type="application/json"
            )
        payload, media_type = answer.result
        return Response(content=payload, status_code=answer.status, media_type=media_type, headers=route.headers())

    async def _answer(self, route: Route, request: Request) -> Answer:
        """Read the body, then the lean path, or MLflow's own scoring code (its answer and errors)."""
        # The body is read under the request timeout too: a client that trickles it answers 504.
        body = await read_body(request, self._max_body_bytes)
        content_type = request.headers.get("content-type")
        deployment = route.deployment
        fast = await self._lean(deployment, body, content_type)
        if fast is not None:
            predictions, predict_seconds, lean = fast
            shadow = self._copy(body, content_type, lambda: predictions) if route.mirrored else None
            logged = None
            if route.logged:
                assert deployment.parser is not None  # the lean path answered
                logged = lean_logged(deployment.parser, lean, predictions)
            with tracing.child("encode"):
                payload = predictions_json(predictions)
            return Answer((payload, "application/json"), 200, len(predictions),
                          predict_seconds, shadow=shadow, logged=logged)  # fmt: skip
        # MLflow's own scoring code decodes, predicts and encodes in one call: one span for it,
        # with the model's ``predict`` inside (gateway/serving/scoring.py).
        with tracing.child("mlflow_scoring"):
            payload, status, media_type, observed = await asyncio.to_thread(
                _guarded_score, deployment, body, content_type
            )
        if status != 200:
            return Answer((payload, media_type), status, error_code=_error_code_of(payload, media_type, status))
        shadow = self._copy(body, content_type, lambda: decoded_predictions(payload)) if route.mirrored else None
        logged = None
        if route.logged and observed.data is not None:
            logged = LoggedRows(observed.rows, enforced_inputs(observed.data, deployment.input_schema),
                                single_output(observed.predictions))  # fmt: skip
        return Answer((payload, media_type), 200, observed.rows, observed.predict_seconds, shadow=shadow,
                      logged=logged)  # fmt: skip

    def _copy(self, body: bytes, content_type: str | None, primary: Any) -> ShadowCopy:
        """The copy the shadow replays: the same body through the same two paths, on its deployment."""

        async def run(shadow: Deployment) -> Any:
            return await self._shadow_answer(shadow, body, content_type)

        return ShadowCopy(run, primary, len(body))

    async def _shadow_answer(self, deployment: Deployment, body: bytes, content_type: str | None) -> Any:
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

    async def _lean(
        self, deployment: Deployment, body: bytes, content_type: str | None
    ) -> tuple[Any, float, Any] | None:
        """(predictions, predict seconds, the parsed input) through the lean path, or None when the
        request needs MLflow's code."""
        parser, batcher = deployment.parser, deployment.batcher
        if parser is None or batcher is None or not is_plain_json(content_type):
            return None
        with tracing.child("decode"):
            if len(body) <= LEAN_INLINE_BYTES:
                matrix = parser.parse(body)
            else:
                matrix = await self._decode_pool.run(parser.parse, body)
        if matrix is None:
            return None
        try:
            predictions, seconds = await batcher.predict(matrix)
            return predictions, seconds, matrix
        except Exception:
            # MLflow's code, on the same model, gives this request MLflow's exact error.
            return None


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
