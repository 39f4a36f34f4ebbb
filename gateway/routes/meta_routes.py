"""Readiness and metrics: ``/ready`` (200 once every configured endpoint serves) and ``/metrics``
(Prometheus text, from the app's own registry). Always open: probes and scrapers need no token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lockgate.gateway.control.deployer import Deployer


def meta_router(deployer: Deployer, registry: CollectorRegistry, configured: list[str]) -> APIRouter:
    router = APIRouter()

    @router.get("/ready")
    async def ready() -> JSONResponse:
        names, missing = deployer.readiness(configured)
        if missing or not names:
            return JSONResponse({"ready": False, "waiting_for": missing}, status_code=503)
        return JSONResponse({"ready": True, "endpoints": names})

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        output = await asyncio.to_thread(generate_latest, registry)
        return Response(content=output, media_type=CONTENT_TYPE_LATEST)

    return router
