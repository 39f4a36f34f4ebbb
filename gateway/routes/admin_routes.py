"""Admin routes: deploy or redeploy (with a traffic policy), promote, abort, undeploy, roll back.
Every one goes through the access guard (token or loopback, never a cross-site browser, JSON only)
before FastAPI reads a body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.control.endpoint_names import ENDPOINT_NAME_PATTERN, ENDPOINT_NAME_RULE, default_name
from lockgate.gateway.control.traffic_policy import KEEP, CanarySpec, Keep, ShadowSpec
from lockgate.gateway.errors import GatewayError, InvalidPolicyError, status_for
from lockgate.gateway.routes.responses import error_response
from lockgate.gateway.serving.serving_options import OPTION_FIELDS, OptionsPatch, ServingOptions
from lockgate.loader.errors import ModelURIError

if TYPE_CHECKING:
    _WithOptions = BaseModel
else:
    _WithOptions = OptionsPatch  # every serving option, generated from ServingOptions


class CanaryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = Field(
        default=None, min_length=1, max_length=4096, description="Default: the endpoint's current canary reference"
    )
    percent: float = Field(ge=0, le=100, allow_inf_nan=False, description="Share of the traffic; 0 drops it")


class ShadowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(min_length=1, max_length=4096)


class DeployRequest(_WithOptions):
    """A deploy: where the model is, the endpoint's name, its traffic policy, and any serving
    option to override."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        pattern=ENDPOINT_NAME_PATTERN,
        description=f"Endpoint name ({ENDPOINT_NAME_RULE}); default: the registered model's name",
    )
    model_uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="The primary's reference; leave it out (with a name) to change only the traffic policy",
    )
    follow: bool | None = Field(default=None, description="Re-resolve periodically; default: on for moving references")
    canary: CanaryBody | None = Field(
        default=None,
        description="A canary: a reference and its percentage. null, or percent 0, drops the canary and the "
        "shadow (unless this request sets a shadow); left out: unchanged",
    )
    shadow: ShadowBody | None = Field(
        default=None,
        description="A shadow that gets a copy of every primary request. null drops it; left out: unchanged",
    )

    def policy(self, current_canary_uri: str | None) -> tuple[CanarySpec | Keep | None, ShadowSpec | Keep | None]:
        """(canary, shadow) as the deployer takes them: a spec to set, None to drop, KEEP."""
        given = self.model_fields_set
        canary: CanarySpec | Keep | None = KEEP
        shadow: ShadowSpec | Keep | None = KEEP
        if "shadow" in given:
            shadow = ShadowSpec(self.shadow.model_uri) if self.shadow is not None else None
        if "canary" in given:
            body = self.canary
            if body is None or body.percent == 0:
                canary = None
                if "shadow" not in given:
                    shadow = None  # percent 0 is an abort: the canary and the shadow go
            else:
                uri = body.model_uri or current_canary_uri
                if uri is None:
                    raise InvalidPolicyError("canary.model_uri is required: this endpoint has no canary yet")
                canary = CanarySpec(uri, body.percent)
        return canary, shadow


def admin_router(deployer: Deployer, guard: AccessGuard, default_options: ServingOptions) -> APIRouter:
    router = APIRouter()

    def admin_actor(request: Request) -> str:
        # A dependency, so it runs before FastAPI parses a body: a refused request is refused
        # for what it is (cross-site, not JSON, no token), not for its body.
        return guard.admin(request)

    @router.post("/admin/endpoints")
    async def admin_deploy(body: DeployRequest, actor: str = Depends(admin_actor)) -> JSONResponse:
        if body.model_uri is None and body.name is None:
            return error_response(422, "INVALID_PARAMETER_VALUE", "a deploy needs a model_uri, or the name of an "
                                  "endpoint whose traffic policy it changes")  # fmt: skip
        try:
            name = body.name or default_name(str(body.model_uri))
        except ModelURIError as exc:
            return error_response(400, "INVALID_PARAMETER_VALUE", str(exc))
        existing = deployer.endpoints.get(name)
        if body.model_uri is None and existing is None:
            deployer.get(name)  # 404, naming the endpoints there are
        canary, shadow = body.policy(existing.canary.model_uri if existing and existing.canary else None)
        base = existing.options if existing is not None else default_options
        options = base.with_overrides(body.model_dump(include=set(OPTION_FIELDS)))
        try:
            endpoint = await deployer.deploy(
                name, body.model_uri, body.follow, actor=actor, options=options, canary=canary, shadow=shadow
            )
        except GatewayError:
            raise
        except Exception as exc:
            status, code = status_for(exc)
            what = body.model_uri or "the traffic policy"
            return error_response(status, code, f"deploy of {what!r} to {name!r} failed: {exc}")
        return JSONResponse(endpoint.describe(), status_code=200)

    @router.post("/admin/endpoints/{name}/promote")
    async def admin_promote(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        """The canary becomes the primary: nothing is fetched or loaded (it is serving already)."""
        endpoint = await deployer.promote(name, actor=actor)
        return JSONResponse(endpoint.describe() | {"bytes_fetched": 0})

    @router.post("/admin/endpoints/{name}/abort")
    async def admin_abort(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        """Drop the canary and the shadow: the primary takes all the traffic again."""
        endpoint = await deployer.abort(name, actor=actor)
        return JSONResponse(endpoint.describe())

    @router.delete("/admin/endpoints/{name}")
    async def admin_undeploy(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        await deployer.undeploy(name, actor=actor)
        return JSONResponse({"undeployed": name})

    @router.post("/admin/endpoints/{name}/rollback")
    async def admin_rollback(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        endpoint = await deployer.rollback(name, actor=actor)
        return JSONResponse(endpoint.describe())

    return router
