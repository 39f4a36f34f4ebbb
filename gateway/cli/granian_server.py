"""``lockgate serve --server granian``: the same app under granian (Rust, hyper) instead of
uvicorn, in this process (granian's embedded server), on uvloop, HTTP/1.

What the gateway keeps on both servers:

- the request-head bound: hyper's buffer bound at ``LOCKGATE_MAX_HEADER_BYTES`` (a huge head never
  reaches Python) and ``gateway/head_bound.py`` for the exact limit and lockgate's 431 body;
- graceful shutdown: SIGTERM or SIGINT stops granian's worker (it stops accepting and finishes
  the requests it has), then the app's lifespan shutdown runs (the inference log's last commit);
- the ready probe and hot swap: they live in the app, not in the server.

uvicorn stays the default: on lockgate's app granian served up to 1.2x more requests a second at
16 connections but cost as much or more CPU per request (docs/performance.md, "The lean transport").
"""

from __future__ import annotations

import asyncio
import signal

from fastapi import FastAPI

from lockgate.gateway.errors import ConfigError
from lockgate.gateway.head_bound import HeadBound
from lockgate.gateway.settings import Settings

# hyper refuses a buffer bound below 8 KiB.
HYPER_MIN_BUFFER = 8192


def run_granian(app: FastAPI, settings: Settings) -> None:
    try:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server.embed import Server
    except ImportError as exc:
        raise ConfigError("--server granian needs granian: pip install 'lockgate[granian]'") from exc
    server = Server(
        HeadBound(app, settings.max_header_bytes),
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(max_buffer_size=max(HYPER_MIN_BUFFER, settings.max_header_bytes)),
        log_level=LogLevels.error,  # the embedded server warns that it is experimental on every start
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.stop)
        await server.serve()

    import uvloop

    uvloop.run(serve())
