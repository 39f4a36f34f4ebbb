"""Endpoints and their lineage: ``/endpoints``, ``/endpoints/{name}``, its input example as a
ready-to-post body, and the ledger's events or what served it at a time (every role, with its
share of the traffic)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.inference_reader import served_data
from lockgate.gateway.routes.responses import error_response
from lockgate.store.errors import StoreError
from lockgate.store.timespec import parse_time


def endpoint_router(deployer: Deployer, guard: AccessGuard) -> APIRouter:
    router = APIRouter()

    @router.get("/endpoints")
    async def list_endpoints(request: Request) -> dict[str, Any]:
        guard.prediction(request)
        return {"endpoints": [e.describe() | {"history": None} for e in deployer.endpoints.values()]}

    @router.get("/endpoints/{name}")
    async def get_endpoint(name: str, request: Request) -> dict[str, Any]:
        guard.prediction(request)
        return deployer.get(name).describe()

    @router.get("/endpoints/{name}/example")
    async def example(name: str, request: Request) -> Response:
        """A ready-to-post request body built from the model's input example: pipe it into curl."""
        guard.prediction(request)
        deployment = deployer.get(name).current
        frame = deployment.servable.model.input_example if deployment is not None else None
        if frame is None or not hasattr(frame, "to_json"):
            return error_response(404, "RESOURCE_DOES_NOT_EXIST", f"endpoint {name!r} has no tabular input example")
        split = orjson.loads(frame.to_json(orient="split", index=False))
        return Response(content=orjson.dumps({"dataframe_split": split}), media_type="application/json")

    @router.get("/endpoints/{name}/lineage")
    async def lineage(name: str, request: Request, at: str | None = None) -> JSONResponse:
        guard.prediction(request)
        try:
            moment = parse_time(at) if at else None
        except ValueError as exc:
            return error_response(400, "INVALID_PARAMETER_VALUE", str(exc))
        ledger = deployer.ledger
        if moment is None:
            events = await asyncio.to_thread(ledger.events, name)
            return JSONResponse(
                {
                    "endpoint": name,
                    "events": [e.as_dict() for e in events],
                    # The data each version served, as the inference log committed it (empty
                    # when the endpoint is not logged): the commits a retraining run can pin.
                    "served_data": await asyncio.to_thread(_served_data, deployer, name),
                }
            )
        policy = await asyncio.to_thread(ledger.policy_at, name, moment)
        primary = policy.primary
        return JSONResponse(
            {
                "endpoint": name,
                "at": moment.isoformat(),
                "serving": primary.as_dict() if primary else None,  # the primary, as before policies
                "policy": policy.as_dict(),
            }
        )

    return router


def _served_data(deployer: Deployer, name: str) -> dict[str, Any]:
    try:
        return served_data(deployer.ledger.open_store(), name)
    except StoreError:  # the store is down: the ledger's events still answer
        return {}
