"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, or
``OTEL_TRACES_EXPORTER=otlp``; off when ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``.
Everything else is the SDK's own reading of the standard variables: the exporter's endpoint,
headers, timeout and compression, ``OTEL_TRACES_SAMPLER`` (and its argument),
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (``service.name`` is ``lockgate`` unless
they name one), and the batch processor's ``OTEL_BSP_*``. Spans leave over OTLP/HTTP (protobuf):
what collectors, Jaeger, Tempo and MLflow's tracking server (``/v1/traces``) take.

What is traced (``docs/monitoring.md``, "Traces"):

- a prediction: one span per request, whatever its protocol (the data plane opens it), continuing
  the caller's W3C ``traceparent`` (an HTTP header, or gRPC metadata); children ``decode``,
  ``predict`` (linked to the ``lockgate.batch`` span of the batch it joined) and ``encode``;
- a deploy: one span, with children ``resolve``, ``fetch``, ``load`` and ``prepare``.

Off, the request path pays one ``is None`` test per request and per child; nothing is imported
from the SDK.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


class _State:
    """The process's tracer (None: off) and the provider that flushes it."""

    def __init__(self) -> None:
        # Instance attributes: the request path reads ``tracer`` without a walk to the class.
        self.tracer: Tracer | None = None
        self.provider: Any = None


STATE = _State()  # read as ``tracing.STATE.tracer is None`` on the request path: one attribute test
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_SPAN = contextlib.nullcontext()


class TracingSettingError(ValueError):
    pass


def wanted(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter not in ("", "otlp"):
        raise TracingSettingError(
            f"OTEL_TRACES_EXPORTER={exporter!r}: lockgate exports spans over OTLP (otlp) or not at all (none)"
        )
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return exporter == "otlp" or bool(endpoint)


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on if the environment asks for it; return whether it is on. A second app in
    the same process (tests) replaces the first one's provider, after flushing it."""
    shutdown()
    if not wanted(environ):
        return False
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise TracingSettingError(
            f"OTLP protocol {protocol!r}: lockgate sends http/protobuf (point the endpoint at the collector's "
            "HTTP port, usually 4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "lockgate"}))
    # Not the global provider: MLflow keeps its own tracing, and a library's global is the
    # application's to set. The sampler is the SDK's reading of OTEL_TRACES_SAMPLER.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    STATE.provider, STATE.tracer = provider, provider.get_tracer("lockgate")
    return True


def shutdown() -> None:
    """Send what is still queued, then stop (the gateway's shutdown)."""
    if STATE.provider is not None:
        STATE.provider.shutdown()
    STATE.tracer = STATE.provider = None


def request_span(name: str, carrier: Any, attributes: dict[str, Any]) -> Any:
    """The span of one prediction request, current while it is open: a child of the caller's
    span when ``carrier`` (headers or gRPC metadata) holds a valid ``traceparent``."""
    assert STATE.tracer is not None
    parent = _PROPAGATOR.extract(carrier) if carrier is not None else None
    return STATE.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def child(name: str) -> Any:
    """A child span of the current span while the block runs (decode, encode, a deploy's phase);
    a shared no-op when tracing is off."""
    tracer_ = STATE.tracer
    if tracer_ is None:
        return _NO_SPAN
    return tracer_.start_as_current_span(name)


@contextlib.contextmanager
def deploy_span(endpoint: str, role: str, model_uri: str, actor: str) -> Iterator[Any]:
    """The span of one deploy (a root: deploys are not requests), with its phases as children
    (``resolve`` here, ``fetch``/``load``/``prepare`` where the slot loads); a failed deploy is
    an error span. A no-op when tracing is off."""
    tracer_ = STATE.tracer
    if tracer_ is None:
        yield None
        return
    attributes = {"lockgate.endpoint": endpoint, "lockgate.role": role, "lockgate.model_uri": model_uri,
                  "lockgate.actor": actor}  # fmt: skip
    with tracer_.start_as_current_span(
        "lockgate.deploy", context=otel_context.Context(), attributes=attributes
    ) as span:
        yield span


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (a deploy's version and commits, once resolved)."""
    if STATE.tracer is None:
        return
    span = trace.get_current_span()
    for key, value in attributes.items():
        span.set_attribute(f"lockgate.{key}", value if value is not None else "")


@contextlib.contextmanager
def batch_span(rows: int, requests: int) -> Iterator[Any]:
    """The span of one predict call that answers ``requests`` merged requests: a root of its own
    (the batcher's task must not parent it under whichever request started the task); each
    request's ``predict`` span links to it."""
    assert STATE.tracer is not None
    span = STATE.tracer.start_span(
        "lockgate.batch",
        context=otel_context.Context(),
        attributes={"lockgate.batch.rows": rows, "lockgate.batch.requests": requests},
    )
    try:
        yield span
    except BaseException as exc:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


def fail(span: Any, status: int, message: str) -> None:
    span.set_attribute("http.response.status_code", status)
    span.set_status(Status(StatusCode.ERROR, message[:500]))
