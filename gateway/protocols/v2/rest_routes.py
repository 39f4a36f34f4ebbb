"""The Open Inference Protocol (KServe V2) over REST, on the same port as ``/invocations``:

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     liveness, readiness (every configured endpoint serves)
    GET  /v2/models/{name}[/versions/{v}]      model metadata from the MLflow signature
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

A model is an endpoint. ``versions/{v}`` answers only while version ``v`` serves the endpoint
(during a swap, the old version's URL stops answering the moment the new one takes over).
Errors are ``{"error": "..."}``: 400 for a request that cannot be read or does not fit the
signature, 404 for an unknown model or version, 503 while an endpoint has no model. Every
answer carries the deployment's lineage: the ``X-Lockgate-*`` headers and, in the response's
``parameters``, the model version and the weights and dataset commits.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import mlflow
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from lockgate.gateway import tracing
from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.errors import AuthError, GatewayError, RequestTimeoutError
from lockgate.gateway.protocols.v2.inference import V2Prediction, infer, shadow_copy
from lockgate.gateway.protocols.v2.metadata import model_metadata
from lockgate.gateway.protocols.v2.tensors import V2Request, output_json, read_request
from lockgate.gateway.serving.data_plane import Answer, DataPlane, Route
from lockgate.gateway.serving.decode_pool import DecodePool
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.request_body import LEAN_INLINE_BYTES, read_body
from lockgate.gateway.serving.request_ids import INCOMING_REQUEST_ID_HEADER, REQUEST_ID_HEADER, is_valid_request_id
from lockgate.gateway.serving.routing import route_key_of

HEADER_LENGTH = "Inference-Header-Content-Length"
V2_REST = "v2-rest"  # the `protocol` label


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json",
                    headers=headers)  # fmt: skip


def _path_parameters(*names: str) -> dict[str, Any]:
    return {"parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]}


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def v2_router(
    plane: DataPlane,
    deployer: Deployer,
    guard: AccessGuard,
    configured: list[str],
    *,
    max_body_bytes: int,
    decode_pool: DecodePool,
) -> APIRouter:
    router = APIRouter(prefix="/v2")

    # Inference first: the router matches paths in order (model_infer is defined below;
    # these resolve it when they run).
    # The path parameters are read from the scope, and declared to OpenAPI by hand: FastAPI's
    # solving of them doubled its per-request dependency work (docs/performance.md, 2026-12-02),
    # and the lean transport calls these endpoints with the Request alone (gateway/lean_transport.py).
    @router.post("/models/{name}/infer", openapi_extra=_path_parameters("name"))
    async def post_infer(request: Request) -> Response:
        return await model_infer(request.path_params["name"], None, request)

    @router.post("/models/{name}/versions/{version}/infer", openapi_extra=_path_parameters("name", "version"))
    async def post_version_infer(request: Request) -> Response:
        params = request.path_params
        return await model_infer(params["name"], params["version"], request)

    def serving(name: str, version: str | None) -> Deployment | Response:
        """The deployment metadata and readiness describe: the primary, unless the version is the canary's."""
        try:
            return plane.route(name, version, split=False).deployment
        except GatewayError as exc:
            return v2_error(exc.status, str(exc))

    @router.get("")
    async def server_metadata() -> Response:
        return _json({"name": "lockgate", "version": mlflow.__version__, "extensions": ["binary_tensor_data"]})

    @router.get("/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @router.get("/health/ready")
    async def ready() -> Response:
        names, waiting = deployer.readiness(configured)
        if waiting or not names:
            return v2_error(503, f"not ready: waiting for {', '.join(waiting) or 'a deployed endpoint'}")
        return _json({"ready": True})

    def refused(request: Request) -> Response | None:
        """The V2 answer to a missing or wrong prediction token (LOCKGATE_API_TOKENS), if any."""
        try:
            guard.prediction(request)
        except AuthError as exc:  # in V2's error shape, so V2 clients show the message
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return v2_error(exc.status, str(exc), headers)
        return None

    async def metadata(name: str, version: str | None, request: Request) -> Response:
        # Guarded like /endpoints/{name}: it names the version's weights and dataset commits.
        if (answer := refused(request)) is not None:
            return answer
        found = serving(name, version)
        if isinstance(found, Response):
            return found
        return _json(model_metadata(name, found), found.headers())

    async def model_ready(name: str, version: str | None) -> Response:
        found = serving(name, version)
        if isinstance(found, Response):
            return found
        return _json({"name": name, "ready": True}, found.headers())

    async def model_infer(name: str, version: str | None, request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            route = plane.route(name, version, route_key_of(request.headers),
                                request_id=request.headers.get(INCOMING_REQUEST_ID_HEADER),
                                carrier=request.headers)  # fmt: skip
        except GatewayError as exc:
            return v2_error(exc.status, str(exc))
        try:
            answer = await plane.serve(route, V2_REST, partial(read_and_infer, route, request))
        except RequestTimeoutError as exc:
            return v2_error(504, str(exc))
        except GatewayError as exc:  # 400 for a request that does not read or fit, 413 past the body limit
            return v2_error(exc.status, str(exc), route.headers())
        response: Response = answer.result
        return response

    async def read_and_infer(route: Route, request: Request) -> Answer:
        # Reading and decoding run under the request timeout too (the plane's): a slow or hostile
        # body answers 504 like a slow model, instead of holding its client's task forever.
        body = await read_body(request, max_body_bytes)
        header_length = request.headers.get(HEADER_LENGTH)
        with tracing.child("decode"):
            if len(body) <= LEAN_INLINE_BYTES:  # microseconds: on the loop
                v2_request = read_request(body, header_length)
            else:  # a big body would hold the loop (and every other request) while it parses
                v2_request = await decode_pool.run(read_request, body, header_length)
        binary = _binary_outputs(v2_request)
        prediction = await infer(route.deployment, v2_request)
        shadow = shadow_copy(v2_request, prediction, len(body)) if route.mirrored else None
        given = v2_request.request_id
        valid = given if is_valid_request_id(given) else None
        request_id = valid or route.request_id  # the body's id, when it follows the rule
        headers = route.headers()
        headers[REQUEST_ID_HEADER] = request_id
        # Encoded here, inside the data plane's call: the answer's encode is timed and traced
        # with the rest of the request.
        with tracing.child("encode"):
            response = _encode(route.name, route.deployment, request_id, binary, prediction, headers=headers)
        return Answer(response, 200, prediction.rows, prediction.predict_seconds, shadow=shadow, request_id=valid,
                      logged=prediction.logged() if route.logged else None)  # fmt: skip

    @router.get("/models/{name}")
    async def get_metadata(name: str, request: Request) -> Response:
        return await metadata(name, None, request)

    @router.get("/models/{name}/versions/{version}")
    async def get_version_metadata(name: str, version: str, request: Request) -> Response:
        return await metadata(name, version, request)

    @router.get("/models/{name}/ready")
    async def get_ready(name: str) -> Response:
        return await model_ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready")
    async def get_version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)

    return router


def _binary_outputs(request: V2Request) -> Callable[[str], bool]:
    """Whether an output goes back as binary data (the binary extension): its own
    ``parameters.binary_data`` when the request names it, else ``binary_data_output``."""
    default = bool(request.parameters.get("binary_data_output"))
    if not request.outputs:
        return lambda output: default
    named = {str(o.get("name")): (o.get("parameters") or {}).get("binary_data") for o in request.outputs}
    return lambda output: default if named.get(output) is None else bool(named[output])


def _encode(
    name: str,
    deployment: Deployment,
    request_id: str,
    binary: Callable[[str], bool],
    prediction: V2Prediction,
    *,
    headers: dict[str, str],
) -> Response:
    entries, pieces = [], []
    for output, values in prediction.outputs.items():
        entry, raw = output_json(output, values, binary=binary(output))
        entries.append(entry)
        pieces.append(raw)
    body: dict[str, Any] = {
        "model_name": name,
        "model_version": deployment.version_label,
        "outputs": entries,
        "parameters": deployment.lineage(),
        "id": request_id,
    }
    raw = b"".join(pieces)
    header = orjson.dumps(body)
    if not raw:
        return Response(header, media_type="application/json", headers=headers)
    headers[HEADER_LENGTH] = str(len(header))
    return Response(header + raw, media_type="application/octet-stream", headers=headers)


__all__ = ["v2_router"]
