"""MLflow's scoring protocol: ``/ping``, ``/health``, ``/version``, ``/invocations`` (the first
configured endpoint) and ``/endpoints/{name}/invocations``, as ``mlflow models serve`` has them."""

from __future__ import annotations

from typing import Any

import mlflow
from fastapi import APIRouter, Request
from fastapi.responses import Response

from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.errors import EndpointNotReadyError
from lockgate.gateway.protocols.mlflow_scoring.invocation import Invoker

# The MLflow scoring protocol, described for OpenAPI clients and fuzzers: the routes read the raw
# body themselves (MLflow's parser gives the exact answers), so FastAPI cannot infer this.
INVOCATIONS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One of dataframe_split, dataframe_records, instances or inputs; optional params",
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                                "index": {"type": "array"},
                            },
                        },
                        "dataframe_records": {"type": "array", "items": {"type": "object"}},
                        "instances": {},
                        "inputs": {},
                        "params": {"type": "object"},
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}

NAMED_INVOCATIONS_OPENAPI: dict[str, Any] = {
    **INVOCATIONS_OPENAPI,
    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"title": "Name", "type": "string"}}],
}


def mlflow_router(invoker: Invoker, deployer: Deployer, guard: AccessGuard, configured: list[str]) -> APIRouter:
    router = APIRouter()

    async def ping() -> Response:
        return Response(content="\n", status_code=200, media_type="application/json")

    router.get("/ping")(ping)
    router.get("/health")(ping)

    @router.get("/version")
    async def version() -> Response:
        return Response(content=mlflow.__version__, status_code=200, media_type="application/json")

    @router.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI)
    async def default_invocations(request: Request) -> Response:
        guard.prediction(request)
        names = configured or list(deployer.endpoints)
        if not names:
            raise EndpointNotReadyError("no endpoint is deployed yet: POST /admin/endpoints or `lockgate deploy`")
        return await invoker.invoke(names[0], request)

    # The name is read from the scope and declared to OpenAPI by hand, as FastAPI declared it: the
    # endpoint takes the Request alone, so the lean transport can call it (gateway/lean_transport.py).
    @router.post("/endpoints/{name}/invocations", openapi_extra=NAMED_INVOCATIONS_OPENAPI)
    async def named_invocations(request: Request) -> Response:
        guard.prediction(request)
        return await invoker.invoke(request.path_params["name"], request)

    return router
