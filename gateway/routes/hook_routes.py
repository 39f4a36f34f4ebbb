"""``POST /hooks/mlflow``: MLflow registry webhooks make follow react at once.

A delivery is believed only when its signature, timestamp and delivery id pass
(``gateway/mlflow_webhooks.py``); then every endpoint whose primary, canary or shadow reference
names the event's registered model is re-resolved now, through the same path as the poll, and
swaps if its answer moved. The answer comes before the re-resolve ends: MLflow's delivery has a
short timeout and nothing waits on it. Polling stays on and stays the source of truth.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.errors import RequestTooLargeError
from lockgate.gateway.mlflow_webhooks import WebhookRefused, WebhookVerifier
from lockgate.gateway.routes.responses import error_response
from lockgate.gateway.serving.request_body import read_body
from lockgate.loader.errors import ModelURIError
from lockgate.loader.model_uri import parse_model_uri

_log = logging.getLogger(__name__)
MAX_DELIVERY_BYTES = 1024 * 1024  # MLflow's payloads are a few hundred bytes
_ERROR_CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 409: "RESOURCE_ALREADY_EXISTS"}


def hook_router(deployer: Deployer, verifier: WebhookVerifier | None) -> APIRouter:
    router = APIRouter()
    running: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

    @router.post("/hooks/mlflow")
    async def mlflow_hook(request: Request) -> JSONResponse:
        if verifier is None:
            why = "MLflow webhooks are off: set LOCKGATE_MLFLOW_WEBHOOK_SECRET to the webhook's secret"
            return error_response(404, "RESOURCE_DOES_NOT_EXIST", why)
        try:
            body = await read_body(request, MAX_DELIVERY_BYTES)
            delivery = verifier.verify(
                body,
                request.headers.get("x-mlflow-delivery-id"),
                request.headers.get("x-mlflow-timestamp"),
                request.headers.get("x-mlflow-signature"),
            )
        except RequestTooLargeError as exc:
            return error_response(413, exc.error_code, str(exc))
        except WebhookRefused as exc:
            _log.warning("lockgate: refused an MLflow webhook: %s", exc)
            return error_response(exc.status, _ERROR_CODES.get(exc.status, "BAD_REQUEST"), str(exc))
        names = endpoints_naming(deployer, delivery.model_name)
        if names:
            task = asyncio.create_task(deployer.follow_now(names))
            running.add(task)
            task.add_done_callback(running.discard)
        return JSONResponse({"event": f"{delivery.entity}.{delivery.action}", "model": delivery.model_name,
                             "endpoints": names})  # fmt: skip

    return router


def endpoints_naming(deployer: Deployer, model_name: str | None) -> list[str]:
    """The endpoints whose primary, canary or shadow reference is a ``models:/`` URI of ``model_name``."""
    if model_name is None:
        return []
    touched = []
    for name, endpoint in deployer.endpoints.items():
        uris = [endpoint.model_uri] + [slot.model_uri for slot in (endpoint.canary, endpoint.shadow) if slot]
        if any(_model_name(uri) == model_name for uri in uris):
            touched.append(name)
    return touched


def _model_name(uri: str | None) -> str | None:
    if not uri:
        return None
    try:
        return parse_model_uri(uri).name
    except ModelURIError:
        return None
