"""Where one prediction's CPU goes, stage by stage: the floor the next person starts from.

    .venv/bin/python bench/request_stages.py [--model iris] [--rows 1] [--requests 3000]

One model is registered and served twice: by ``lockgate serve`` (uvicorn + httptools, as users
run it) under wrk, and by the same app in this process, driven as an ASGI app with no server (a
request scope, its body, a ``send`` that keeps the answer). Every figure is CPU per request
(user + system), the median of ``--repeats`` runs:

    whole request, live       the server's process group over a wrk load (1 and 16 connections)
    the app without a server  the app in process, one request after another
    server                    live at 1 connection minus the app (both one request at a time, no
                              batching): uvicorn, httptools, the socket and the wake-ups
    FastAPI's routing         the same request through FastAPI's own stack instead of the lean
                              transport (what gateway/lean_transport.py saves)
    routing (lean)            LeanTransport.find
    decode                    the lean parser: body -> float64 matrix
    predict                   the deployment's predict function on that matrix
    observers                 skew counting after the batch, and the answer's metrics
    encode                    MLflow's answer bytes and the Response around them
    data plane, rest          what the app costs beyond the stages above: route, in-flight
                              count, timeout, the batch queue, reading the body
    one thread hand-off       for comparison: ``run_in_executor`` of a no-op, what a predict
                              sent to the predict thread costs beyond itself

The stages are measured apart, in loops of their own, so they do not add up exactly to the
whole; the remainder is shown as what it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
warnings.filterwarnings("ignore")

from commit_ab import TICK_US, cpu_ticks  # noqa: E402
from serving_bench import build_models, register, split_body, start, stop_group, wrk  # noqa: E402


def cpu_us_per_call(call: Callable[[], object], repeat: int) -> float:
    call()
    started = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - started) / repeat * 1e6


async def handoff_cpu_us(calls: int) -> float:
    """CPU per ``run_in_executor`` of a function that returns at once: what handing a predict to
    a thread costs, the figure the batcher's inline rule weighs a predict against."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as executor:
        for _ in range(200):
            await loop.run_in_executor(executor, int)
        started = time.process_time()
        for _ in range(calls):
            await loop.run_in_executor(executor, int)
        return (time.process_time() - started) / calls * 1e6


def scope_of(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"},
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
    }  # fmt: skip


async def request(app: Any, path: str, body: bytes) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_of(path, body), receive, send)
    return status


async def app_cpu_us(app: Any, path: str, body: bytes, requests: int) -> float:
    for _ in range(200):
        assert await request(app, path, body) == 200
    started = time.process_time()
    for _ in range(requests):
        await request(app, path, body)
    return (time.process_time() - started) / requests * 1e6


def live_cpu_us(model: str, work: Path, tracking: str, body_file: Path, seconds: int) -> dict[int, float]:
    server = start("lockgate", model, work, tracking, 0)
    try:
        wrk(server.url, body_file, 16, 2)  # warm-up
        found = {}
        for connections in (1, 16):
            before = cpu_ticks(server.proc.pid)
            result = wrk(server.url, body_file, connections, seconds)
            found[connections] = (cpu_ticks(server.proc.pid) - before) * TICK_US / max(result["requests"], 1)
        return found
    finally:
        stop_group(server.proc)


async def in_process(model: str, body: bytes, requests: int, repeats: int) -> dict[str, float]:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry
    from starlette.responses import Response

    from lockgate.gateway.app import create_app
    from lockgate.gateway.control.endpoint_spec import EndpointSpec
    from lockgate.gateway.serving.prediction_json import predictions_json
    from lockgate.gateway.settings import Settings
    from lockgate.monitoring.serving_metrics import ServingMetrics

    app = create_app(Settings(), [EndpointSpec(model, f"models:/{model}/1")])
    async with app.router.lifespan_context(app):
        deployer = app.state.deployer
        while (current := deployer.endpoints[model].current) is None or current.parser is None:
            await asyncio.sleep(0.1)
        deployment = deployer.endpoints[model].current
        for _ in range(3000):  # the background work after ready: the ONNX conversion and check
            if not deployment.path.onnx_pending:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        assert deployment.parser is not None and deployment.batcher is not None
        fastapi_stack = FastAPI.__call__.__get__(app)  # the app as FastAPI alone would serve it
        figures: dict[str, list[float]] = {}
        matrix = deployment.parser.parse(body)
        predict = deployment.batcher._predict
        predictions = predict(matrix)
        after = deployment.batcher._after_batch
        # Throwaway series (their own registry): the measurement must not move the gateway's.
        metrics_series = ServingMetrics(CollectorRegistry()).answer_series(model, "1", "bench", "primary")
        scope = scope_of("/invocations", body)
        headers = {"X-Lockgate-Model": model, "X-Lockgate-Version": "1", "X-Lockgate-Request-Id": "0" * 32}

        def observe() -> None:
            if after is not None:
                after(matrix, predictions, 5e-5)
            metrics_series.answered_after(1e-4, len(matrix), 5e-5)

        def encode() -> None:
            Response(predictions_json(predictions), media_type="application/json", headers=headers)

        for _ in range(repeats):
            figures.setdefault("app", []).append(await app_cpu_us(app, "/invocations", body, requests))
            figures.setdefault("fastapi", []).append(await app_cpu_us(fastapi_stack, "/invocations", body, requests))
            figures.setdefault("routing", []).append(cpu_us_per_call(lambda: app.lean.find(scope), requests))
            figures.setdefault("decode", []).append(cpu_us_per_call(lambda: deployment.parser.parse(body), requests))
            figures.setdefault("predict", []).append(cpu_us_per_call(lambda: predict(matrix), requests))
            figures.setdefault("observers", []).append(cpu_us_per_call(observe, requests))
            figures.setdefault("encode", []).append(cpu_us_per_call(encode, requests))
            figures.setdefault("handoff", []).append(await handoff_cpu_us(requests))
    return {stage: statistics.median(values) for stage, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="iris", choices=["iris", "diabetes", "forest"])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000, help="requests per in-process measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of each live wrk load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockgate-stages-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        (model,) = build_models([args.model])
        register([model], work, tracking)
        body = split_body(model.frame, args.rows)
        body_file = work / "body.json"
        body_file.write_bytes(body)
        live = live_cpu_us(model.name, work, tracking, body_file, args.seconds)
        os.environ.update(
            MLFLOW_TRACKING_URI=tracking, MLFLOW_REGISTRY_URI=tracking, LOCKGATE_STORE=str(work / "store")
        )
        os.environ["LOCKGATE_CACHE_DIR"] = str(work / "cache-in-process")
        import uvloop

        stages = uvloop.run(in_process(model.name, body, args.requests, args.repeats))
    named = ("routing", "decode", "predict", "observers", "encode")
    rest = stages["app"] - sum(stages[s] for s in named)
    rows = [
        ("whole request, live, 16 connections (batched)", live[16]),
        ("whole request, live, 1 connection", live[1]),
        ("the app without a server", stages["app"]),
        ("server (live at 1 connection - the app, both one request at a time)", live[1] - stages["app"]),
        ("FastAPI's routing (FastAPI's stack - the lean app)", stages["fastapi"] - stages["app"]),
        ("routing (lean)", stages["routing"]),
        ("decode", stages["decode"]),
        ("predict", stages["predict"]),
        ("observers (skew, metrics)", stages["observers"]),
        ("encode", stages["encode"]),
        ("data plane, rest", rest),
        ("for comparison: one thread hand-off (run_in_executor of a no-op)", stages["handoff"]),
    ]
    print(f"\n{model.description}: {args.rows} row(s) per request, CPU per request (median of {args.repeats})\n")
    print("| stage | CPU us per request |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:,.1f} |")


if __name__ == "__main__":
    main()
