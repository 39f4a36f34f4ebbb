"""The HTTP gateway: ``create_app(settings, endpoints)`` composes it, and does nothing else.

    settings -> store opener, loader, ledger, preparer -> deployer (control plane, events)
             -> the data plane (route once, in-flight, timeout, observe) -> codecs over it:
                MLflow's protocol (invoker), V2 REST and gRPC -> routers: mlflow protocol, V2 (REST),
                endpoints, admin, meta; one error shape; one access guard; one metrics registry
             -> the lean transport: the prediction routes' endpoints called ahead of FastAPI's routing
             -> the V2 gRPC service on its own port, when LOCKGATE_GRPC_PORT is set

Every part lives in its own module; this file only wires them and runs the lifespan (deploy the
configured endpoints, then follow).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from lockgate.gateway import tracing
from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deploy_events import DeployEvents
from lockgate.gateway.control.deploy_metrics import DeployMetrics
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.control.endpoint_spec import EndpointSpec
from lockgate.gateway.control.ledger import Ledger
from lockgate.gateway.control.live_endpoints import gateway_stats, live_endpoints, shadow_of
from lockgate.gateway.control.preparer import Preparer
from lockgate.gateway.lean_transport import LeanFastAPI, LeanTransport, lean_routes
from lockgate.gateway.mlflow_webhooks import WebhookVerifier
from lockgate.gateway.protocols.mlflow_scoring.invocation import Invoker
from lockgate.gateway.protocols.mlflow_scoring.routes import mlflow_router
from lockgate.gateway.protocols.v2.outputs import FACTS as V2_FACTS
from lockgate.gateway.protocols.v2.outputs import learn_outputs
from lockgate.gateway.protocols.v2.rest_routes import v2_router
from lockgate.gateway.routes.admin_routes import admin_router
from lockgate.gateway.routes.endpoint_routes import endpoint_router
from lockgate.gateway.routes.feedback_routes import feedback_router
from lockgate.gateway.routes.hook_routes import hook_router
from lockgate.gateway.routes.meta_routes import meta_router
from lockgate.gateway.routes.responses import install_error_handlers
from lockgate.gateway.serving import decode_steps
from lockgate.gateway.serving.answer_horizon import AnswerHorizon
from lockgate.gateway.serving.data_plane import DataPlane
from lockgate.gateway.serving.decode_pool import DecodePool
from lockgate.gateway.serving.inference_log import InferenceLog
from lockgate.gateway.serving.shadow import ShadowMirror
from lockgate.gateway.serving.skew_setup import SkewSettings
from lockgate.gateway.settings import Settings
from lockgate.gateway.wiring import build_loader, store_opener
from lockgate.monitoring.decode_metrics import DecodeStepsCollector
from lockgate.monitoring.inference_log_metrics import InferenceLogMetrics
from lockgate.monitoring.live_score import LiveQuality
from lockgate.monitoring.serving_metrics import ServingMetrics
from lockgate.monitoring.shadow_metrics import ShadowMetrics
from lockgate.monitoring.skew_collector import SkewCollector

__all__ = ["EndpointSpec", "create_app"]


def create_app(settings: Settings | None = None, endpoints: list[EndpointSpec] | None = None) -> FastAPI:
    settings = settings or Settings()
    # OTEL_* decide (gateway/tracing.py); a bad setting fails here, before anything listens.
    tracing.configure()
    specs = list(endpoints or [])
    configured = [s.name for s in specs]
    default_options = settings.serving_options()
    open_store = store_opener(settings, create=True)

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    events = DeployEvents()
    events.subscribe(DeployMetrics(metrics))
    loader = build_loader(settings)
    preparer = Preparer(
        open_store,
        loader.cache.derived_dir,
        loader.cache.find_derived,
        SkewSettings(settings.skew_window_seconds, settings.skew_sub_windows),
        settings.max_extra_columns,
        protocol_facts={V2_FACTS: learn_outputs},
    )
    deployer = Deployer(
        loader,
        Ledger(open_store),
        drain_timeout=settings.drain_timeout,
        preparer=preparer,
        events=events,
    )
    registry.register(SkewCollector(partial(live_endpoints, deployer), partial(gateway_stats, deployer)))
    mirror = ShadowMirror(
        partial(shadow_of, deployer),
        ShadowMetrics(registry),
        queue_size=settings.shadow_queue_size,
        timeout=settings.request_timeout,
    )
    events.subscribe(mirror)
    registry.register(DecodeStepsCollector(decode_steps.total))
    decode_pool = DecodePool()
    inference_log = InferenceLog(
        open_store,
        InferenceLogMetrics(registry),
        quality=LiveQuality(registry, settings.live_score_rows),
        horizon=AnswerHorizon(settings.feedback_horizon_rows),
    )
    plane = DataPlane(deployer.get, metrics, timeout=settings.request_timeout, mirror=mirror, log=inference_log)
    invoker = Invoker(plane, max_body_bytes=settings.max_body_bytes, decode_pool=decode_pool)
    guard = AccessGuard(settings.admin_token, settings.api_token_list())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # gRPC listens first: a taken port fails the start before any model loads.
        grpc_server = await _start_grpc(
            settings, plane, deployer, guard, configured=configured, decode_pool=decode_pool
        )
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
                    canary=spec.canary,
                    shadow=spec.shadow,
                    prefer_pin=settings.warm_start,
                )
        # The startup heap (MLflow, pandas, sklearn, the models) is millions of long-lived objects.
        # Left to the collector, the first full collection under traffic stalls every request for
        # ~150 ms: move them all out of its way. No collection first: it would find almost nothing
        # (2,861 unreachable objects, no change in RSS, after the imports of a cold start) and
        # costs 0.55 s of the path to ready.
        gc.freeze()
        gc.enable()  # `lockgate serve` disables it for the startup (gateway/cli/serve_commands.py)
        follower = asyncio.create_task(deployer.follow_forever(settings.follow_interval))
        # A warm restart served local pins: ask the registry now, not one follow interval later.
        reconcile = asyncio.create_task(deployer.follow_forever(0.0, once=True))
        asyncio.get_running_loop().call_soon(preparer.start_background_work)  # after uvicorn listens
        try:
            yield
        finally:
            follower.cancel()
            reconcile.cancel()
            await mirror.close()
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            decode_pool.close()
            # Last: every answer given above is in a window now; commit them before the exit.
            await asyncio.to_thread(inference_log.close)
            await asyncio.to_thread(tracing.shutdown)  # the spans still queued leave now

    app = LeanFastAPI(title="lockgate", lifespan=lifespan)
    app.state.deployer = deployer
    app.state.settings = settings
    install_error_handlers(app)
    # V2 first: its router turns away a path outside /v2 by its prefix at once. (Its predictions
    # and MLflow's never reach this routing: the lean transport, below, answers them.)
    v2_routes = v2_router(
        plane, deployer, guard, configured, max_body_bytes=settings.max_body_bytes, decode_pool=decode_pool
    )
    mlflow_routes = mlflow_router(invoker, deployer, guard, configured)
    app.include_router(v2_routes)
    app.include_router(mlflow_routes)
    app.include_router(meta_router(deployer, registry, configured))
    app.include_router(endpoint_router(deployer, guard))
    app.include_router(feedback_router(deployer, inference_log, guard, max_body_bytes=settings.max_body_bytes))
    app.include_router(admin_router(deployer, guard, default_options))
    verifier = (
        WebhookVerifier(settings.mlflow_webhook_secret, settings.mlflow_webhook_max_age)
        if settings.mlflow_webhook_secret
        else None
    )
    app.include_router(hook_router(deployer, verifier))
    # The prediction routes are answered ahead of FastAPI's machinery, by their own endpoints
    # (gateway/lean_transport.py); FastAPI still documents them and serves everything else.
    app.lean = LeanTransport(lean_routes([*v2_routes.routes, *mlflow_routes.routes]))
    return app


async def _start_grpc(
    settings: Settings,
    plane: DataPlane,
    deployer: Deployer,
    guard: AccessGuard,
    *,
    configured: list[str],
    decode_pool: DecodePool,
) -> Any:
    """The V2 gRPC service, when LOCKGATE_GRPC_PORT / --grpc-port asks for it (grpc loads only then)."""
    if settings.grpc_port is None:
        return None
    from lockgate.gateway.protocols.v2.grpc_service import InferenceService, start_grpc_server

    service = InferenceService(plane, deployer, guard, configured, decode_pool=decode_pool)
    return await start_grpc_server(service, settings.host, settings.grpc_port)
