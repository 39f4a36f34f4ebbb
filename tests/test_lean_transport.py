"""The prediction routes' lean transport (gateway/lean_transport.py): what it answers, what it
passes to FastAPI, and that the routes it takes over are documented exactly as before.

The behaviour of the routes themselves (status codes, headers, error bodies, auth, body limits)
is held by the suites that run a real ``lockgate serve``: the peer scoring suites against
``mlflow models serve``, the V2 suites, the trust and hostile-input suites, the fuzz run. These
tests drive the layer in process, as an ASGI app, with a FastAPI app behind it that must not be
reached for a prediction.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import APIRouter, Request
from starlette.responses import Response

from lockgate.gateway.app import create_app
from lockgate.gateway.errors import AuthError, EndpointNotFoundError
from lockgate.gateway.lean_transport import PREDICTION_PATHS, LeanFastAPI, LeanTransport, lean_routes
from lockgate.gateway.settings import Settings

DATA = Path(__file__).resolve().parent / "data"
# /openapi.json's operations (their path parameters and request bodies) as the app documented
# them on the commit before the lean transport (467bf26), written by create_app(Settings()).
BEFORE = DATA / "openapi_operations_before_lean.json"


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            documented = {k: operation[k] for k in ("parameters", "requestBody") if k in operation}
            found[f"{method.upper()} {path}"] = documented
    return found


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # create_app exports the store root to the environment (MLflow's plugins read it there).
    monkeypatch.setenv("LOCKGATE_STORE", str(tmp_path / "store"))
    settings = Settings(
        store=str(tmp_path / "store"),
        cache_dir=str(tmp_path / "cache"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    return create_app(settings)


def test_every_route_documented_before_is_still_documented_the_same(app: Any) -> None:
    before = orjson.loads(BEFORE.read_bytes())
    now = operations(app.openapi())
    missing = sorted(set(before) - set(now))
    assert not missing, f"no longer in /openapi.json: {missing}"
    changed = [name for name in before if before[name] != now[name]]
    assert not changed, f"documented differently now: {changed}"
    for path in PREDICTION_PATHS:
        assert f"POST {path}" in now


def test_the_app_answers_its_prediction_routes_through_the_lean_transport(app: Any) -> None:
    assert isinstance(app, LeanFastAPI)
    assert [route.path for route in app.lean.routes] == list(PREDICTION_PATHS)


# ---- the layer in process -------------------------------------------------------------------


class Recorder(LeanFastAPI):
    """The lean layer in a LeanFastAPI whose own machinery (its middleware, its routes) is replaced by
    a recorder: it records what reaches FastAPI and answers 299."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await LeanFastAPI.__call__(self, scope, receive, send)

    def build_middleware_stack(self) -> Any:
        async def behind(scope: Any, receive: Any, send: Any) -> None:
            self.paths.append((scope["method"], scope["path"]))
            await Response(b"behind", status_code=299)(scope, receive, send)

        return behind


def prediction_router() -> APIRouter:
    router = APIRouter()

    @router.post("/invocations")
    async def invocations(request: Request) -> Response:
        body = await request.body()
        return Response(b"invocations:" + body, media_type="application/json")

    @router.post("/endpoints/{name}/invocations")
    async def named(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "missing":
            raise EndpointNotFoundError(f"no endpoint named {name!r}")
        if name == "locked":
            raise AuthError("needs a token", 401)
        if name == "boom":
            raise ValueError("a bug")
        return Response(f"named:{name}".encode())

    @router.post("/v2/models/{name}/infer")
    async def infer(request: Request) -> Response:
        return Response(f"infer:{request.path_params['name']}".encode())

    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def version_infer(request: Request) -> Response:
        params = request.path_params
        return Response(f"infer:{params['name']}@{params['version']}".encode())

    @router.post("/invocations/other")  # not a prediction path: never taken over
    async def other(request: Request) -> Response:
        raise AssertionError("the lean transport took a route it does not own")

    return router


def call(
    layer: Recorder, method: str, path: str, body: bytes = b"", *, root_path: str = "", sent: list[Any] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request through ``layer``; ``sent``: where the messages go."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = [] if sent is None else sent

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(layer(scope, receive, send))
    start, *bodies = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in bodies)


@pytest.fixture
def layer_and_behind() -> tuple[Recorder, Recorder]:
    app = Recorder()
    app.lean = LeanTransport(lean_routes(prediction_router().routes))
    return app, app


def test_the_prediction_routes_are_answered_without_reaching_the_app(
    layer_and_behind: tuple[Recorder, Recorder],
) -> None:
    layer, behind = layer_and_behind
    assert call(layer, "POST", "/invocations", b'{"a": 1}')[::2] == (200, b'invocations:{"a": 1}')
    assert call(layer, "POST", "/endpoints/fraud/invocations")[::2] == (200, b"named:fraud")
    assert call(layer, "POST", "/v2/models/fraud/infer")[::2] == (200, b"infer:fraud")
    assert call(layer, "POST", "/v2/models/fraud/versions/3/infer")[::2] == (200, b"infer:fraud@3")
    # Mounted under a proxy's root_path, as Starlette's router strips it.
    assert call(layer, "POST", "/api/invocations", root_path="/api")[::2] == (200, b"invocations:")
    assert behind.paths == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/invocations"),  # FastAPI answers 405 with its Allow header
        ("PUT", "/v2/models/fraud/infer"),
        ("POST", "/invocations/"),  # FastAPI's trailing-slash redirect
        ("POST", "/invocations/other"),
        ("POST", "/endpoints//invocations"),  # an empty name is no {name}
        ("POST", "/endpoints/a/b/invocations"),
        ("POST", "/v2/models/fraud/versions/infer"),
        ("POST", "/v2/models/fraud/versions/3/4/infer"),
        ("POST", "/v2/models/fraud"),
        ("POST", "/v2/invocations"),
        ("POST", "/apiinvocations"),
    ],
)
def test_everything_else_goes_to_the_app(layer_and_behind: tuple[Recorder, Recorder], method: str, path: str) -> None:
    layer, behind = layer_and_behind
    status, _, body = call(layer, method, path, root_path="/api" if path.startswith("/api") else "")
    assert (status, body) == (299, b"behind")
    assert behind.paths == [(method, path)]


def test_a_gateway_error_gets_the_app_s_error_body(layer_and_behind: tuple[Recorder, Recorder]) -> None:
    layer, _ = layer_and_behind
    status, headers, body = call(layer, "POST", "/endpoints/missing/invocations")
    assert status == 404
    assert orjson.loads(body) == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no endpoint named 'missing'"}
    status, headers, body = call(layer, "POST", "/endpoints/locked/invocations")
    assert (status, headers.get("www-authenticate")) == (401, "Bearer")
    assert orjson.loads(body)["message"] == "needs a token"


def test_an_unexpected_error_answers_a_plain_500_and_is_raised_for_the_server_to_log(
    layer_and_behind: tuple[Recorder, Recorder],
) -> None:
    layer, _ = layer_and_behind
    sent: list[Any] = []
    with pytest.raises(ValueError, match="a bug"):
        call(layer, "POST", "/endpoints/boom/invocations", sent=sent)
    start, body = sent
    assert (start["status"], body["body"]) == (500, b"Internal Server Error")


def test_an_endpoint_that_asks_fastapi_for_more_than_the_request_is_refused_at_startup() -> None:
    router = APIRouter()

    @router.post("/invocations")
    async def invocations(request: Request, name: str) -> Response:  # a query parameter FastAPI would solve
        return Response(b"")

    with pytest.raises(RuntimeError, match="with the Request alone"):
        lean_routes(router.routes, ("/invocations",))


def test_a_missing_prediction_route_is_refused_at_startup() -> None:
    with pytest.raises(RuntimeError, match=re.escape("no POST route for /v2/models/{name}/infer")):
        lean_routes(APIRouter().routes, ("/v2/models/{name}/infer",))
