"""The prediction routes' own transport: a small ASGI layer that answers them ahead of FastAPI.

FastAPI serves every route, and per request it pays for that generality: the path is tried
against each route in turn, the endpoint's dependencies are solved, and the call is wrapped in
the exception middleware's handler lookup. For a 1-row prediction that machinery cost more of
the serving thread than the model (docs/performance.md, "The lean transport"). This layer runs
first, in the app's own ``__call__`` (``LeanFastAPI``), before FastAPI's native telemetry check,
its middleware stack and its router; an unexpected exception answers the 500 Starlette's
server-error middleware would:

    POST /invocations, /endpoints/{name}/invocations,
         /v2/models/{name}[/versions/{v}]/infer      -> matched here by segments, handler called
    anything else (and every other method)           -> FastAPI, as before

The handlers are the FastAPI routes' own endpoints, taken from the protocol routers by path
(``lean_routes``), so the two cannot drift apart: the same function answers, OpenAPI documents
it where it always did, and a ``GatewayError`` it raises becomes the same error body
(``gateway_error_response``) the app's exception handler gives. An endpoint that asks FastAPI for
anything but the bare ``Request`` (a dependency, a body model) would be skipped silently here, so
``lean_routes`` refuses it at startup instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from lockgate.gateway.errors import GatewayError
from lockgate.gateway.routes.responses import gateway_error_response

# The routes this layer answers (every one a POST): the prediction routes of both protocols.
PREDICTION_PATHS = (
    "/invocations",
    "/endpoints/{name}/invocations",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class LeanRoute:
    """One POST route: its path as segments (``None`` where a ``{parameter}`` stands) and its handler."""

    path: str
    segments: tuple[str | None, ...]
    parameters: tuple[str, ...]
    handler: Handler

    @classmethod
    def of(cls, path: str, handler: Handler) -> LeanRoute:
        segments: list[str | None] = []
        parameters: list[str] = []
        for segment in path.split("/"):
            if segment.startswith("{") and segment.endswith("}"):
                segments.append(None)
                parameters.append(segment[1:-1])
            else:
                segments.append(segment)
        return cls(path, tuple(segments), tuple(parameters), handler)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters when ``parts`` (a path split at ``/``) is this route, else None.

        A parameter is one non-empty segment, as Starlette's ``{name}`` matches ``[^/]+``."""
        if len(parts) != len(self.segments):
            return None
        values = []
        for part, segment in zip(parts, self.segments, strict=True):
            if segment is None:
                if not part:
                    return None
                values.append(part)
            elif part != segment:
                return None
        return dict(zip(self.parameters, values, strict=True))


def lean_routes(routes: Iterable[BaseRoute], paths: Sequence[str] = PREDICTION_PATHS) -> list[LeanRoute]:
    """The lean routes for ``paths``, each with the app's own POST endpoint for that path."""
    found: dict[str, LeanRoute] = {}
    for route in routes:
        if isinstance(route, APIRoute) and route.path in paths and "POST" in (route.methods or ()):
            _check_bare(route)
            found[route.path] = LeanRoute.of(route.path, route.endpoint)
    missing = [path for path in paths if path not in found]
    if missing:
        raise RuntimeError(f"the lean transport found no POST route for {', '.join(missing)}")
    return [found[path] for path in paths]


def _check_bare(route: APIRoute) -> None:
    parameters = list(inspect.signature(route.endpoint).parameters.values())
    if len(parameters) != 1 or parameters[0].annotation not in (Request, "Request") or route.dependencies:
        raise RuntimeError(
            f"POST {route.path}: the lean transport calls its endpoint with the Request alone; "
            "read path parameters from request.path_params and declare them with openapi_extra"
        )


class LeanTransport:
    """Finds a lean route for a request and answers it; ``None`` from ``find`` passes it on."""

    def __init__(self, routes: Sequence[LeanRoute]) -> None:
        self._routes = tuple(routes)
        # By segment count: the prediction paths all differ in it, so a path is compared with one
        # route at most (a V2 request no longer tries the MLflow routes first).
        self._by_length: dict[int, list[LeanRoute]] = {}
        for route in self._routes:
            self._by_length.setdefault(len(route.segments), []).append(route)

    @property
    def routes(self) -> tuple[LeanRoute, ...]:
        return self._routes

    def find(self, scope: Scope) -> tuple[Handler, dict[str, str]] | None:
        """The handler and path parameters of an HTTP request to a lean route, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        parts = _route_path(scope).split("/")
        for route in self._by_length.get(len(parts), ()):
            parameters = route.match(parts)
            if parameters is not None:
                return route.handler, parameters
        return None

    @staticmethod
    async def answer(handler: Handler, parameters: dict[str, str], scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_params"] = parameters
        try:
            response = await handler(Request(scope, receive))
        except GatewayError as exc:
            response = gateway_error_response(exc)
        except Exception:
            # As Starlette's ServerErrorMiddleware: a plain 500, then raised for the server to log.
            # (Every handler builds its whole answer before sending, so nothing has been sent yet.)
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await response(scope, receive, send)


class LeanFastAPI(FastAPI):
    """FastAPI, with the lean routes answered before any of its machinery runs (its native
    telemetry check, middleware stack and routing): ``lean`` is set once the routes exist."""

    lean = LeanTransport(())  # no lean routes until the app is composed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.lean.find(scope)
        if found is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette sets it
        await self.lean.answer(found[0], found[1], scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the app's routes match against: without the ``root_path`` a proxy mounts it
    under, exactly as Starlette's router strips it (``starlette._utils.get_route_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path
