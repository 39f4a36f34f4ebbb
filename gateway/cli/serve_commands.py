"""``lockgate serve``, ``deploy``, ``endpoints``, ``undeploy``, ``rollback``, ``lineage``."""

from __future__ import annotations

import errno
import gc
import socket
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from lockgate.gateway.cli.console import err
from lockgate.gateway.errors import ConfigError
from lockgate.gateway.serving.serving_options import OPTION_HELP, PRECISIONS
from lockgate.gateway.settings import Settings

GatewayOption = Annotated[
    str, typer.Option("--gateway", help="Gateway URL. Env: LOCKGATE_GATEWAY.", envvar="LOCKGATE_GATEWAY")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]


def _help(option: str, extra: str = "") -> str:
    """A flag's help: the option's one help text (gateway/serving/serving_options.py), its env var."""
    return f"{OPTION_HELP[option]}{extra} Env: LOCKGATE_{option.upper()}."


OnnxOption = Annotated[
    bool | None, typer.Option("--onnx/--no-onnx", help=_help("onnx", " Default on."), show_default=False)
]
BatchingOption = Annotated[
    bool | None, typer.Option("--batching/--no-batching", help=_help("batching"), show_default=False)
]
BatchRowsOption = Annotated[
    int | None,
    typer.Option("--max-batch-rows", min=1, help=_help("max_batch_rows", " Default 256."), show_default=False),
]
BatchWaitOption = Annotated[
    float | None,
    typer.Option("--max-batch-wait-ms", min=0, help=_help("max_batch_wait_ms", " Default 2."), show_default=False),
]
SpinningOption = Annotated[
    bool | None,
    typer.Option(
        "--onnx-spinning/--no-onnx-spinning", help=_help("onnx_spinning", " Default off."), show_default=False
    ),
]
LogSampleOption = Annotated[
    float | None,
    typer.Option(
        "--inference-log-sample",
        min=0,
        max=1,
        help=_help("inference_log_sample", " Default 0 (off)."),
        show_default=False,
    ),
]
LogWindowOption = Annotated[
    float | None,
    typer.Option(
        "--inference-log-window",
        min=1,
        max=86400,
        help=_help("inference_log_window", " Default 60."),
        show_default=False,
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option("--target-column", help=_help("target_column"), show_default=False),
]
PrecisionOption = Annotated[
    str | None, typer.Option("--precision", help=_help("precision", " Default exact."), show_default=False)
]
DEFAULT_GATEWAY = "http://127.0.0.1:8080"
SERVERS = get_args(Settings.model_fields["server"].annotation)  # the one list: Settings.server's


def serve(
    model_uris: Annotated[
        list[str] | None, typer.Argument(help="Model URIs; each becomes an endpoint.", show_default=False)
    ] = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="Endpoint name (repeat once per URI).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address. Env: LOCKGATE_HOST (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port. Env: LOCKGATE_PORT (default 8080).")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="HTTP server: uvicorn (default: the least CPU per request, measured) or granian "
            "(pip install 'lockgate[granian]'). Env: LOCKGATE_SERVER.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file listing endpoints.")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            min=1,
            max=65535,
            help="Also serve the Open Inference Protocol (KServe V2) over gRPC on this port. "
            "Env: LOCKGATE_GRPC_PORT (default: off).",
            show_default=False,
        ),
    ] = None,
    onnx: OnnxOption = None,
    batching: BatchingOption = None,
    max_batch_rows: BatchRowsOption = None,
    max_batch_wait_ms: BatchWaitOption = None,
    onnx_spinning: SpinningOption = None,
    precision: PrecisionOption = None,
    inference_log_sample: LogSampleOption = None,
    inference_log_window: LogWindowOption = None,
    target_column: TargetOption = None,
) -> None:
    """Serve model URIs over HTTP, MLflow-compatible, each pinned to its store commit.

    Example: lockgate serve models:/diabetes/Production --port 8080
    Then: curl -X POST localhost:8080/invocations -H 'Content-Type: application/json' -d '{"dataframe_split": ...}'
    """
    # The imports and the first loads below create about a million long-lived objects, and the
    # collector's passes over them cost ~1 s of a cold start (measured in bench/startup_profile.py).
    # None of it is garbage worth collecting: the gateway freezes that heap and re-enables the
    # collector when its startup deploys are done (gateway.app's lifespan).
    gc.disable()
    from lockgate.gateway.control.config_file import read_config
    from lockgate.gateway.control.endpoint_names import check_endpoint_name, default_name
    from lockgate.gateway.control.endpoint_spec import EndpointSpec

    updates: dict[str, Any] = {}
    if host:
        updates["host"] = host
    if port:
        updates["port"] = port
    if grpc_port:
        updates["grpc_port"] = grpc_port
    if server:
        if server not in SERVERS:
            raise typer.BadParameter(f"--server is one of {', '.join(SERVERS)}, not {server!r}")
        updates["server"] = server
    # Serving options given here are the defaults of every endpoint that does not set its own.
    given = {
        "onnx": onnx,
        "batching": batching,
        "max_batch_rows": max_batch_rows,
        "max_batch_wait_ms": max_batch_wait_ms,
        "onnx_spinning": onnx_spinning,
        "precision": precision_value(precision),
        "inference_log_sample": inference_log_sample,
        "inference_log_window": inference_log_window,
        "target_column": target_column,
    }
    updates.update({k: v for k, v in given.items() if v is not None})
    settings = Settings().model_copy(update=updates)
    config = config or (Path(settings.config) if settings.config else None)
    specs = read_config(config, settings.serving_options()) if config else []
    names = list(name or [])
    uris = list(model_uris or [])
    if names and len(names) != len(uris):
        raise typer.BadParameter(f"give one --name per model URI ({len(uris)} URIs, {len(names)} names)")
    for index, uri in enumerate(uris):
        specs.append(EndpointSpec(check_endpoint_name(names[index]) if names else default_name(uri), uri))
    if not specs:
        err.print("no endpoints configured yet: deploy with `lockgate deploy MODEL_URI` or POST /admin/endpoints")
    if settings.warm_start and settings.onnx:
        _preload_pinned_graphs(settings, specs)
    from lockgate.gateway.app import create_app

    # Hold the port before any model loads or any ledger event is written: a gateway that cannot
    # listen must not record itself as serving.
    listener = bind_listener(settings.host, settings.port)
    app = create_app(settings, specs)
    served = ", ".join(s.name for s in specs) or "no endpoints"
    err.print(f"lockgate loading {served} on http://{settings.host}:{settings.port} (ready when /ready answers 200)")
    if settings.server == "granian":
        from lockgate.gateway.cli.granian_server import run_granian

        listener.close()  # granian binds its own socket; the port was free a moment ago
        run_granian(app, settings)
        return
    import uvicorn

    from lockgate.gateway.bounded_http import bounded_http_protocol

    # httptools, with the request head bounded (LOCKGATE_MAX_HEADER_BYTES): uvicorn's own
    # httptools protocol buffers a header of any size.
    http = bounded_http_protocol(settings.max_header_bytes)
    server_config = uvicorn.Config(app, workers=1, log_level="warning", http=http)
    uvicorn.Server(server_config).run(sockets=[listener])


def _preload_pinned_graphs(settings: Settings, specs: list[Any]) -> None:
    """A warm restart's head start: the checked graphs the local pins will serve start loading
    now, in threads, while the gateway imports (``loader/onnx/graph_preload.py``)."""
    from lockgate.loader.onnx.graph_preload import pinned_graphs, preload

    try:
        graphs = pinned_graphs(Path(settings.cache_dir), [spec.model_uri for spec in specs if spec.model_uri])
    except OSError:
        return  # the deploy reports a cache it cannot use
    preload(graphs, spinning=settings.onnx_spinning)


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error naming the problem."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} is in use on {host} (another lockgate, or `make serve`?): choose another with --port"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def precision_value(value: str | None) -> str | None:
    if value is not None and value not in PRECISIONS:
        raise typer.BadParameter(f"--precision must be {', '.join(PRECISIONS)}, not {value!r}")
    return value
