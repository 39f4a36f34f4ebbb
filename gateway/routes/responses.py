"""lockgate's one error shape, ``{"error_code", "message"}``, and the handlers that give every
error lockgate answers itself that shape (MLflow's own plain-text 415s are left as MLflow's)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lockgate.gateway.errors import GatewayError


def error_response(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


def gateway_error_response(exc: GatewayError) -> JSONResponse:
    """The answer to a ``GatewayError`` raised by a handler (FastAPI's or the lean transport's)."""
    response = error_response(exc.status, exc.error_code, str(exc))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return gateway_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes and methods answer in lockgate's one error shape, not FastAPI's {"detail"}.
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path} (see /docs for the routes)"
            return error_response(404, "ENDPOINT_NOT_FOUND", message)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or ""
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
            response = error_response(405, "BAD_REQUEST", message)
            if allowed:
                response.headers["Allow"] = allowed
            return response
        return error_response(exc.status_code, "BAD_REQUEST", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return error_response(422, "INVALID_PARAMETER_VALUE", f"invalid request: {problems}")
