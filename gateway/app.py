"""The HTTP gateway: ``create_app(settings, endpoints)`` builds a FastAPI app.

Routes follow MLflow's scoring server (/ping, /health, /version, /invocations) and add named
endpoints, readiness, lineage and admin routes. Only this module and the CLI know HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import mlflow
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.deployer import Deployer
from gateway.errors import AdminAuthError, EndpointNotReadyError, GatewayError, RequestTooLargeError, status_for
from gateway.ledger import Ledger
from gateway.scoring import input_schema, score
from gateway.settings import Settings
from gateway.wiring import build_loader, store_opener


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    model_uri: str
    follow: bool | None = None


class DeployRequest(BaseModel):
    name: str | None = Field(default=None, description="Endpoint name; default: the registered model's name")
    model_uri: str
    follow: bool | None = Field(default=None, description="Re-resolve periodically; default: on for moving references")


def _error(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


def default_name(model_uri: str) -> str:
    from loader.model_uri import parse_model_uri

    ref = parse_model_uri(model_uri)
    if ref.name:
        return ref.name
    if ref.store_uri is not None:
        return (ref.store_uri.path.rsplit("/", 1)[-1] or ref.store_uri.repo).replace(".", "-")
    return (ref.selector or ref.run_id or "model").replace(".", "-")


def create_app(settings: Settings | None = None, endpoints: list[EndpointSpec] | None = None) -> FastAPI:
    settings = settings or Settings()
    specs = list(endpoints or [])
    open_store = store_opener(settings, create=True)
    deployer = Deployer(
        build_loader(settings), Ledger(open_store), drain_timeout=settings.drain_timeout, schema_of=input_schema
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for spec in specs:
            # A failed first deploy shows on /endpoints/{name} and /ready; the gateway still starts.
            with contextlib.suppress(Exception):
                await deployer.deploy(spec.name, spec.model_uri, spec.follow, actor="startup", keep_on_failure=True)
        follower = asyncio.create_task(deployer.follow_forever(settings.follow_interval))
        try:
            yield
        finally:
            follower.cancel()

    app = FastAPI(title="lockgate", lifespan=lifespan)
    app.state.deployer = deployer
    app.state.settings = settings
    configured = [s.name for s in specs]

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc.status, exc.error_code, str(exc))

    # -- MLflow-compatible routes ------------------------------------------------------------

    async def ping() -> Response:
        return Response(content="\n", status_code=200, media_type="application/json")

    app.get("/ping")(ping)
    app.get("/health")(ping)

    @app.get("/version")
    async def version() -> Response:
        return Response(content=mlflow.__version__, status_code=200, media_type="application/json")

    @app.get("/ready")
    async def ready() -> JSONResponse:
        names = configured or list(deployer.endpoints)
        missing = [n for n in names if n not in deployer.endpoints or deployer.endpoints[n].current is None]
        if missing or not names:
            return JSONResponse({"ready": False, "waiting_for": missing}, status_code=503)
        return JSONResponse({"ready": True, "endpoints": names})

    async def _read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise RequestTooLargeError(
                f"request body of {int(declared):,} bytes exceeds the {settings.max_body_bytes:,}-byte limit "
                "(LOCKGATE_MAX_BODY_BYTES)"
            )
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > settings.max_body_bytes:
                raise RequestTooLargeError(
                    f"request body exceeds the {settings.max_body_bytes:,}-byte limit (LOCKGATE_MAX_BODY_BYTES)"
                )
        return bytes(body)

    async def _invoke(name: str, request: Request) -> Response:
        endpoint = deployer.get(name)
        deployment = endpoint.current
        if deployment is None:
            raise EndpointNotReadyError(
                f"endpoint {name!r} has no loaded model yet: {endpoint.last_error or endpoint.status}"
            )
        body = await _read_body(request)
        deployment.inflight += 1
        try:
            payload, status, media_type = await asyncio.wait_for(
                asyncio.to_thread(score, deployment, body, request.headers.get("content-type")),
                timeout=settings.request_timeout,
            )
        except TimeoutError:
            return Response(
                content="Request processing time exceeded limit", status_code=504, media_type="application/json"
            )
        finally:
            deployment.inflight -= 1
        return Response(content=payload, status_code=status, media_type=media_type, headers=deployment.headers())

    @app.post("/invocations")
    async def default_invocations(request: Request) -> Response:
        names = configured or list(deployer.endpoints)
        if not names:
            raise EndpointNotReadyError("no endpoint is deployed yet: POST /admin/endpoints or `lockgate deploy`")
        return await _invoke(names[0], request)

    @app.post("/endpoints/{name}/invocations")
    async def named_invocations(name: str, request: Request) -> Response:
        return await _invoke(name, request)

    # -- endpoints and lineage ---------------------------------------------------------------

    @app.get("/endpoints")
    async def list_endpoints() -> dict[str, Any]:
        return {"endpoints": [e.describe() | {"history": None} for e in deployer.endpoints.values()]}

    @app.get("/endpoints/{name}")
    async def get_endpoint(name: str) -> dict[str, Any]:
        return deployer.get(name).describe()

    @app.get("/endpoints/{name}/lineage")
    async def lineage(name: str, at: str | None = None) -> JSONResponse:
        from gateway.cli.timespec import parse_time

        try:
            moment = parse_time(at) if at else None
        except ValueError as exc:
            return _error(400, "INVALID_PARAMETER_VALUE", str(exc))
        ledger = deployer.ledger
        if moment is None:
            events = await asyncio.to_thread(ledger.events, name)
            return JSONResponse({"endpoint": name, "events": [e.as_dict() for e in events]})
        event = await asyncio.to_thread(ledger.serving_at, name, moment)
        return JSONResponse({"endpoint": name, "at": moment.isoformat(), "serving": event.as_dict() if event else None})

    # -- admin -------------------------------------------------------------------------------

    def _admin(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if settings.admin_token:
            supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if not supplied:
                raise AdminAuthError("admin routes need 'Authorization: Bearer <LOCKGATE_ADMIN_TOKEN>'", 401)
            if not hmac.compare_digest(supplied, settings.admin_token):
                raise AdminAuthError("the admin token is wrong", 403)
            return "admin-token"
        host = request.client.host if request.client else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise AdminAuthError("no LOCKGATE_ADMIN_TOKEN is set, so admin routes answer loopback clients only", 403)
        return f"loopback:{host}"

    @app.post("/admin/endpoints")
    async def admin_deploy(body: DeployRequest, request: Request) -> JSONResponse:
        actor = _admin(request)
        name = body.name or default_name(body.model_uri)
        try:
            endpoint = await deployer.deploy(name, body.model_uri, body.follow, actor=actor)
        except GatewayError:
            raise
        except Exception as exc:
            status, code = status_for(exc)
            return _error(status, code, f"deploy of {body.model_uri!r} to {name!r} failed: {exc}")
        return JSONResponse(endpoint.describe(), status_code=200)

    @app.delete("/admin/endpoints/{name}")
    async def admin_undeploy(name: str, request: Request) -> JSONResponse:
        actor = _admin(request)
        await deployer.undeploy(name, actor=actor)
        return JSONResponse({"undeployed": name})

    @app.post("/admin/endpoints/{name}/rollback")
    async def admin_rollback(name: str, request: Request) -> JSONResponse:
        actor = _admin(request)
        endpoint = await deployer.rollback(name, actor=actor)
        return JSONResponse(endpoint.describe())

    return app
