"""Admin routes: deploy or redeploy, undeploy, roll back. Every one goes through the access guard
(token or loopback, never a cross-site browser, JSON only) before FastAPI reads a body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import AccessGuard
from gateway.deployer import Deployer
from gateway.endpoint_names import ENDPOINT_NAME_PATTERN, ENDPOINT_NAME_RULE, default_name
from gateway.errors import GatewayError, status_for
from gateway.routes.responses import error_response
from gateway.serving_options import OPTION_FIELDS, OptionsPatch, ServingOptions
from loader.errors import ModelURIError

if TYPE_CHECKING:
    _WithOptions = BaseModel
else:
    _WithOptions = OptionsPatch  # every serving option, generated from ServingOptions


class DeployRequest(_WithOptions):
    """A deploy: where the model is, the endpoint's name, and any serving option to override."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        pattern=ENDPOINT_NAME_PATTERN,
        description=f"Endpoint name ({ENDPOINT_NAME_RULE}); default: the registered model's name",
    )
    model_uri: str = Field(min_length=1, max_length=4096)
    follow: bool | None = Field(default=None, description="Re-resolve periodically; default: on for moving references")


def admin_router(deployer: Deployer, guard: AccessGuard, default_options: ServingOptions) -> APIRouter:
    router = APIRouter()

    def admin_actor(request: Request) -> str:
        # A dependency, so it runs before FastAPI parses a body: a refused request is refused
        # for what it is (cross-site, not JSON, no token), not for its body.
        return guard.admin(request)

    @router.post("/admin/endpoints")
    async def admin_deploy(body: DeployRequest, actor: str = Depends(admin_actor)) -> JSONResponse:
        try:
            name = body.name or default_name(body.model_uri)
        except ModelURIError as exc:
            return error_response(400, "INVALID_PARAMETER_VALUE", str(exc))
        base = deployer.endpoints[name].options if name in deployer.endpoints else default_options
        options = base.with_overrides(body.model_dump(include=set(OPTION_FIELDS)))
        try:
            endpoint = await deployer.deploy(name, body.model_uri, body.follow, actor=actor, options=options)
        except GatewayError:
            raise
        except Exception as exc:
            status, code = status_for(exc)
            return error_response(status, code, f"deploy of {body.model_uri!r} to {name!r} failed: {exc}")
        return JSONResponse(endpoint.describe(), status_code=200)

    @router.delete("/admin/endpoints/{name}")
    async def admin_undeploy(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        await deployer.undeploy(name, actor=actor)
        return JSONResponse({"undeployed": name})

    @router.post("/admin/endpoints/{name}/rollback")
    async def admin_rollback(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        endpoint = await deployer.rollback(name, actor=actor)
        return JSONResponse(endpoint.describe())

    return router
