"""The HTTP gateway: ``create_app(settings, endpoints)`` builds a FastAPI app.

Routes follow MLflow's scoring server (/ping, /health, /version, /invocations) and add named
endpoints, readiness, lineage and admin routes. Only this module and the CLI know HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlflow
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.auth import AccessGuard
from gateway.batcher import Batcher
from gateway.deployer import Deployer
from gateway.endpoint_names import ENDPOINT_NAME_PATTERN, ENDPOINT_NAME_RULE, default_name
from gateway.endpoints import Deployment
from gateway.errors import BadRequestError, EndpointNotReadyError, GatewayError, RequestTooLargeError, status_for
from gateway.fast_request import NumericFrameParser, is_plain_json
from gateway.ledger import Ledger
from gateway.prediction_json import predictions_json
from gateway.request_guard import check_body
from gateway.scoring import input_schema, score, skew_observer
from gateway.serving_options import ServingOptions
from gateway.serving_path import choose_serving_path
from gateway.settings import Settings
from gateway.skew_setup import SkewSettings, setup_skew
from gateway.wiring import build_loader, store_opener
from loader.baseline import training_data
from loader.dependency_check import requirement_mismatches
from loader.errors import ModelURIError
from monitoring.serving_metrics import ServingMetrics
from monitoring.skew_collector import LiveEndpoint, SkewCollector


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    model_uri: str
    follow: bool | None = None
    options: ServingOptions | None = None  # None: the gateway-wide defaults from Settings


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        pattern=ENDPOINT_NAME_PATTERN,
        description=f"Endpoint name ({ENDPOINT_NAME_RULE}); default: the registered model's name",
    )
    model_uri: str = Field(min_length=1, max_length=4096)
    follow: bool | None = Field(default=None, description="Re-resolve periodically; default: on for moving references")
    onnx: bool | None = Field(default=None, description="Serve sklearn models through ONNX when the check passes")
    batching: bool | None = Field(default=None, description="Merge concurrent requests; default: on for row-wise paths")
    max_batch_rows: int | None = Field(default=None, ge=1, le=1_000_000)
    max_batch_wait_ms: float | None = Field(default=None, ge=0, le=1000)
    onnx_spinning: bool | None = Field(default=None, description="Spinning ONNX threads (large batches)")
    precision: Literal["auto", "exact"] | None = Field(
        default=None, description="exact: only answers bit-identical to the native model"
    )


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
_log = logging.getLogger(__name__)
LEAN_INLINE_BYTES = 32 * 1024
OPTION_FIELDS = ("onnx", "batching", "max_batch_rows", "max_batch_wait_ms", "onnx_spinning", "precision")


def _error(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


def _error_code_of(payload: bytes, media_type: str, status: int) -> str:
    """The MLflow error_code of an error response (415s are plain text in MLflow)."""
    if media_type == "application/json":
        try:
            return str(orjson.loads(payload).get("error_code", "UNKNOWN"))
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return "UNSUPPORTED_MEDIA_TYPE" if status == 415 else "UNKNOWN"


def create_app(settings: Settings | None = None, endpoints: list[EndpointSpec] | None = None) -> FastAPI:
    settings = settings or Settings()
    specs = list(endpoints or [])
    open_store = store_opener(settings, create=True)
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    skew_settings = SkewSettings(settings.skew_window_seconds, settings.skew_sub_windows)

    default_options = settings.serving_options()

    def prepare(deployment: Deployment, options: ServingOptions) -> None:
        # Everything a request could need is decided here, once: the schema, the skew baseline,
        # the serving path (ONNX conversion and its check) and the batcher.
        deployment.input_schema = input_schema(deployment)
        schema = deployment.input_schema
        signature_columns = len(schema.input_names()) if schema is not None and schema.has_input_names() else 0
        deployment.max_columns = signature_columns + settings.max_extra_columns
        data = training_data(open_store, deployment.servable.resolved)
        cache_dir = Path(settings.cache_dir)
        deployment.skew = setup_skew(data, deployment.servable, cache_dir, skew_settings)
        path = choose_serving_path(deployment.servable, options, data.sample, cache_dir, convert=False)
        deployment.path = path
        threading.Thread(target=_check_dependencies, args=(deployment,), daemon=True, name="dependency-check").start()
        if path.predict is None or path.columns is None:
            return
        batching = path.row_wise if options.batching is None else options.batching
        deployment.parser = NumericFrameParser(path.columns)
        deployment.batcher = Batcher(
            path.predict,
            name=deployment.version_label,
            enabled=batching,
            max_rows=options.max_batch_rows,
            max_wait_seconds=options.max_batch_wait_ms / 1000,
            inflight=lambda: deployment.inflight,
            after_batch=skew_observer(deployment.skew, path.columns),
        )
        if path.onnx_pending:
            threading.Thread(
                target=_convert_in_background, args=(deployment, options, data.sample), daemon=True, name="onnx-convert"
            ).start()

    # Background work of a deploy (dependency check, ONNX conversion) waits until the gateway
    # serves: at startup it would compete with the path to ready for the GIL and the CPU.
    serving = threading.Event()

    def _check_dependencies(deployment: Deployment) -> None:
        serving.wait()
        try:
            found = requirement_mismatches(deployment.servable.directory)
        except Exception as exc:
            found = [f"the dependency check failed: {exc}"]
        deployment.dependency_warnings = found
        for message in found:
            _log.warning("version %s: %s", deployment.version_label, message)

    def _convert_in_background(deployment: Deployment, options: ServingOptions, sample: Any) -> None:
        serving.wait()
        try:
            path = choose_serving_path(deployment.servable, options, sample, Path(settings.cache_dir), convert=True)
        except Exception as exc:  # the native path keeps serving; say why the fast path did not come
            path = dataclasses.replace(deployment.path, reason=f"ONNX conversion failed: {exc}", onnx_pending=False)
        deployment.upgrade_path(path)
        _log.info("version %s now served by %s (%s)", deployment.version_label, path.name, path.reason or "checked")

    def on_event(name: str, action: str, deployment: Deployment | None) -> None:
        metrics.deploys.labels(name, action, "failed" if action == "failed" else "ok").inc()
        if deployment is not None:
            fetch = deployment.servable.report.fetch
            metrics.load_seconds.labels(name).observe(deployment.servable.report.total_seconds)
            metrics.bytes_fetched.labels(name).inc(fetch.bytes_fetched)
            metrics.bytes_reused.labels(name).inc(fetch.bytes_reused)

    def on_retire(name: str, deployment: Deployment) -> None:
        metrics.forget(name, deployment.version_label)

    deployer = Deployer(
        build_loader(settings),
        Ledger(open_store),
        drain_timeout=settings.drain_timeout,
        prepare=prepare,
        on_event=on_event,
        on_retire=on_retire,
    )

    def live_endpoints() -> list[LiveEndpoint]:
        out = []
        for endpoint in list(deployer.endpoints.values()):
            current = endpoint.current
            if current is None:
                continue
            r = current.resolved
            info = {
                "endpoint": endpoint.name,
                "model": r.name or "",
                "version": current.version_label,
                "model_uri": endpoint.model_uri,
                "weights_commit": r.weights_commit or "",
                "dataset_commit": r.dataset_commit or "",
                "run_id": r.run_id or "",
                "code_commit": r.code_commit or "",
                "serving_path": current.serving_path,
                "numeric_contract": str((current.path.check or {}).get("contract", "exact")),
            }
            out.append(
                LiveEndpoint(endpoint.name, current.version_label, info, current.skew.inputs, current.skew.predictions)
            )
        return out

    def gateway_stats() -> dict[str, float]:
        cache = deployer.loader.cache
        held = cache.held()
        return {
            "lockgate_cache_used_bytes": float(sum(int(m.get("size", 0)) for m in held.values())),
            "lockgate_cache_limit_bytes": float(cache.max_bytes or 0),
            "lockgate_cache_versions": float(len(held)),
            "lockgate_ledger_events_pending": float(deployer.ledger.pending),
            "lockgate_ledger_events_rejected_total": float(deployer.ledger.rejected_total),
        }

    registry.register(SkewCollector(live_endpoints, gateway_stats))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for spec in specs:
            # A failed first deploy shows on /endpoints/{name} and /ready; the gateway still starts.
            with contextlib.suppress(Exception):
                await deployer.deploy(
                    spec.name,
                    spec.model_uri,
                    spec.follow,
                    actor="startup",
                    keep_on_failure=True,
                    options=spec.options or default_options,
                )
        # The startup heap (MLflow, pandas, sklearn, the models) is millions of long-lived objects.
        # Left to the collector, the first full collection under traffic stalls every request for
        # ~150 ms. Collect once now, before traffic, and move the survivors out of its way.
        gc.collect()
        gc.freeze()
        follower = asyncio.create_task(deployer.follow_forever(settings.follow_interval))
        asyncio.get_running_loop().call_soon(serving.set)  # after uvicorn has started listening
        try:
            yield
        finally:
            follower.cancel()

    guard = AccessGuard(settings.admin_token, settings.api_token_list())

    def admin_actor(request: Request) -> str:
        # A dependency, so it runs before FastAPI parses a body: a refused request is refused
        # for what it is (cross-site, not JSON, no token), not for its body.
        return guard.admin(request)

    app = FastAPI(title="lockgate", lifespan=lifespan)
    app.state.deployer = deployer
    app.state.settings = settings
    configured = [s.name for s in specs]

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        response = _error(exc.status, exc.error_code, str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes and methods answer in lockgate's one error shape, not FastAPI's {"detail"}.
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path} (see /docs for the routes)"
            return _error(404, "ENDPOINT_NOT_FOUND", message)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or ""
            response = _error(
                405, "BAD_REQUEST", f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
            )
            if allowed:
                response.headers["Allow"] = allowed
            return response
        return _error(exc.status_code, "BAD_REQUEST", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return _error(422, "INVALID_PARAMETER_VALUE", f"invalid request: {problems}")

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
        started = time.perf_counter()
        version = deployment.version_label
        metrics.inflight.labels(name).inc()
        deployment.inflight += 1
        try:
            body = await _read_body(request)
            content_type = request.headers.get("content-type")
            async with asyncio.timeout(settings.request_timeout):
                fast = await _lean(deployment, body, content_type)
                if fast is not None:
                    predictions, predict_seconds = fast
                    payload = predictions_json(predictions)
                    metrics.observe_predict(name, version, len(predictions), predict_seconds)
                    metrics.observe_request(name, version, 200, time.perf_counter() - started, None)
                    return Response(
                        content=payload, status_code=200, media_type="application/json", headers=deployment.headers()
                    )
                payload, status, media_type, observed = await asyncio.to_thread(
                    _guarded_score, deployment, body, content_type
                )
        except TimeoutError:
            metrics.observe_request(name, version, 504, time.perf_counter() - started, "REQUEST_TIMEOUT")
            return Response(
                content="Request processing time exceeded limit", status_code=504, media_type="application/json"
            )
        except (RequestTooLargeError, BadRequestError) as exc:
            metrics.observe_request(name, version, exc.status, time.perf_counter() - started, exc.error_code)
            raise
        finally:
            deployment.inflight -= 1
            metrics.inflight.labels(name).dec()
        error_code = None
        if status == 200:
            metrics.observe_predict(name, version, observed.rows, observed.predict_seconds)
        else:
            error_code = _error_code_of(payload, media_type, status)
        metrics.observe_request(name, version, status, time.perf_counter() - started, error_code)
        return Response(content=payload, status_code=status, media_type=media_type, headers=deployment.headers())

    def _guarded_score(deployment: Deployment, body: bytes, content_type: str | None) -> Any:
        # In the worker thread: refusing a hostile body costs one orjson parse, not the event loop.
        check_body(body, content_type, deployment.max_columns)
        return score(deployment, body, content_type)

    async def _lean(deployment: Deployment, body: bytes, content_type: str | None) -> tuple[Any, float] | None:
        """Predictions through the lean path, or None when the request needs MLflow's code."""
        parser, batcher = deployment.parser, deployment.batcher
        if parser is None or batcher is None or not is_plain_json(content_type):
            return None
        # Small bodies parse in microseconds; a big one would hold the event loop, so it moves.
        matrix = parser.parse(body) if len(body) <= LEAN_INLINE_BYTES else await asyncio.to_thread(parser.parse, body)
        if matrix is None:
            return None
        try:
            return await batcher.predict(matrix)
        except Exception:
            # MLflow's code, on the same model, gives this request MLflow's exact error.
            return None

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        output = await asyncio.to_thread(generate_latest, registry)
        return Response(content=output, media_type=CONTENT_TYPE_LATEST)

    @app.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI)
    async def default_invocations(request: Request) -> Response:
        guard.prediction(request)
        names = configured or list(deployer.endpoints)
        if not names:
            raise EndpointNotReadyError("no endpoint is deployed yet: POST /admin/endpoints or `lockgate deploy`")
        return await _invoke(names[0], request)

    @app.post("/endpoints/{name}/invocations", openapi_extra=INVOCATIONS_OPENAPI)
    async def named_invocations(name: str, request: Request) -> Response:
        guard.prediction(request)
        return await _invoke(name, request)

    # -- endpoints and lineage ---------------------------------------------------------------

    @app.get("/endpoints")
    async def list_endpoints(request: Request) -> dict[str, Any]:
        guard.prediction(request)
        return {"endpoints": [e.describe() | {"history": None} for e in deployer.endpoints.values()]}

    @app.get("/endpoints/{name}")
    async def get_endpoint(name: str, request: Request) -> dict[str, Any]:
        guard.prediction(request)
        return deployer.get(name).describe()

    @app.get("/endpoints/{name}/example")
    async def example(name: str, request: Request) -> Response:
        """A ready-to-post request body built from the model's input example: pipe it into curl."""
        guard.prediction(request)
        deployment = deployer.get(name).current
        frame = deployment.servable.model.input_example if deployment is not None else None
        if frame is None or not hasattr(frame, "to_json"):
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"endpoint {name!r} has no tabular input example")
        split = orjson.loads(frame.to_json(orient="split", index=False))
        return Response(content=orjson.dumps({"dataframe_split": split}), media_type="application/json")

    @app.get("/endpoints/{name}/lineage")
    async def lineage(name: str, request: Request, at: str | None = None) -> JSONResponse:
        from store.timespec import parse_time

        guard.prediction(request)
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

    @app.post("/admin/endpoints")
    async def admin_deploy(body: DeployRequest, actor: str = Depends(admin_actor)) -> JSONResponse:
        try:
            name = body.name or default_name(body.model_uri)
        except ModelURIError as exc:
            return _error(400, "INVALID_PARAMETER_VALUE", str(exc))
        base = deployer.endpoints[name].options if name in deployer.endpoints else default_options
        overrides = {k: v for k, v in body.model_dump(include=set(OPTION_FIELDS)).items() if v is not None}
        options = dataclasses.replace(base, **overrides)
        try:
            endpoint = await deployer.deploy(name, body.model_uri, body.follow, actor=actor, options=options)
        except GatewayError:
            raise
        except Exception as exc:
            status, code = status_for(exc)
            return _error(status, code, f"deploy of {body.model_uri!r} to {name!r} failed: {exc}")
        return JSONResponse(endpoint.describe(), status_code=200)

    @app.delete("/admin/endpoints/{name}")
    async def admin_undeploy(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        await deployer.undeploy(name, actor=actor)
        return JSONResponse({"undeployed": name})

    @app.post("/admin/endpoints/{name}/rollback")
    async def admin_rollback(name: str, actor: str = Depends(admin_actor)) -> JSONResponse:
        endpoint = await deployer.rollback(name, actor=actor)
        return JSONResponse(endpoint.describe())

    return app
