"""The floor of each protocol's server stack in this Python: what a server that does no work
serves, 1 small request at 16 connections, with the load generator (h2load) and the framing of
``serving_bench.py --protocols-only``, and the CPU each request costs its serving thread.

    .venv/bin/python bench/protocol_floors.py [--seconds 5] [--rounds 2]

Every server answers a constant, on uvloop (as ``lockgate serve`` runs):
  - ``uvicorn-asgi``: uvicorn + httptools and a bare ASGI app;
  - ``fastapi``: the same with one FastAPI route that reads the body (what ``/invocations`` and
    V2 REST run on, before lockgate's own work);
  - ``grpc-aio``: ``grpc.aio`` with the OIP proto's generated servicer (what lockgate's V2 gRPC
    runs on); ``grpc-aio-asyncio`` the same on asyncio's own loop;
  - ``grpc-sync``: grpcio's thread-pool server, a generic bytes handler;
  - ``+thread``: the handler also waits for one call on a worker thread, as every lockgate
    prediction waits for its batch's predict thread.

A serving thread saturates first, so its CPU per request bounds req/s. Whatever a gRPC handler
does, it cannot beat a REST handler doing the same work if its stack's floor costs more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("uvicorn-asgi", "fastapi", "fastapi+thread", "grpc-aio", "grpc-aio+thread", "grpc-aio-asyncio", "grpc-sync")
REST = frozenset({"uvicorn-asgi", "fastapi", "fastapi+thread"})
CONSTANT = b'{"predictions": [0]}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(kind: str, port: int) -> None:
    """Run one constant-answer server on 127.0.0.1:port until killed (in a child process)."""
    from concurrent.futures import ThreadPoolExecutor

    import uvloop

    worker = ThreadPoolExecutor(max_workers=1)
    handoff = kind.endswith("+thread")
    if kind in REST:
        import uvicorn

        if kind == "uvicorn-asgi":

            async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    return
                while (await receive()).get("more_body"):
                    pass
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": CONSTANT})

            uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", loop="uvloop", http="httptools")
            return
        from fastapi import FastAPI, Request, Response

        api = FastAPI()

        @api.post("/invocations")
        async def invocations(request: Request) -> Response:
            await request.body()
            if handoff:
                await asyncio.get_running_loop().run_in_executor(worker, int)
            return Response(CONSTANT, media_type="application/json")

        uvicorn.run(api, host="127.0.0.1", port=port, log_level="error", loop="uvloop", http="httptools")
        return
    import grpc

    sys.path.insert(0, str(ROOT))
    from lockgate.gateway.protocols.v2.grpc_proto.messages import SERVICE, protos

    tensor = protos.ModelInferResponse.InferOutputTensor(name="predict", datatype="INT64", shape=[1])
    response = protos.ModelInferResponse(model_name="m", model_version="1", outputs=[tensor],
                                         raw_output_contents=[b"\0" * 8])  # fmt: skip
    if kind == "grpc-sync":
        raw = response.SerializeToString()
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"ModelInfer": grpc.unary_unary_rpc_method_handler(lambda r, c: raw)}
        )
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return

    async def model_infer(request: Any, context: Any) -> Any:
        if handoff:
            await asyncio.get_running_loop().run_in_executor(worker, int)
        return response

    async def main() -> None:
        server = grpc.aio.server()
        method = grpc.unary_unary_rpc_method_handler(
            model_infer,
            request_deserializer=protos.ModelInferRequest.FromString,
            response_serializer=lambda message: message.SerializeToString(),
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main()) if kind == "grpc-aio-asyncio" else uvloop.run(main())


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU clock ticks so far of each thread of ``pid``."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def load(kind: str, port: int, seconds: int, work: Path, pid: int) -> tuple[float, float, float]:
    """(req/s, serving-thread CPU us per request, other threads' CPU us per request)."""
    h2load = shutil.which("h2load") or "h2load"
    if kind in REST:
        body = work / "rest.json"
        body.write_bytes(b'{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}')
        target = ["--h1", "-H", "content-type: application/json", f"http://127.0.0.1:{port}/invocations"]
    else:
        sys.path.insert(0, str(ROOT))
        import pandas as pd

        from bench.serving_bench import grpc_body

        body = work / "grpc.bin"
        body.write_bytes(grpc_body(pd.DataFrame({"a": [1.0, 2.0]}), 1, "m"))
        target = ["-H", "content-type: application/grpc", "-H", "te: trailers",
                  f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"]  # fmt: skip
    before = thread_ticks(pid)
    command = [h2load, "-c", "16", "-m", "1", "-D", str(seconds), "-d", str(body), *target]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = thread_ticks(pid)
    found = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if found is None:
        raise RuntimeError(f"h2load printed no rate:\n{out}")
    rate = float(found.group(1))
    per_request = 1e6 / (os.sysconf("SC_CLK_TCK") * rate * seconds)
    main_ticks = after.get(str(pid), 0) - before.get(str(pid), 0)
    other_ticks = sum(after[t] - before.get(t, 0) for t in after if t != str(pid))
    return rate, main_ticks * per_request, other_ticks * per_request


def wait_listening(port: int, proc: subprocess.Popen[bytes], kind: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install nghttp2-client (make bench installs it)")
    measured: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in SERVERS}
    with tempfile.TemporaryDirectory(prefix="lockgate-floors-") as tmp:
        for _ in range(args.rounds):
            for kind in SERVERS:  # interleaved rounds: each server sees the machine the others saw
                port = free_port()
                command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
                proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
                try:
                    wait_listening(port, proc, kind)
                    load(kind, port, 1, Path(tmp), proc.pid)  # warm-up
                    measured[kind].append(load(kind, port, args.seconds, Path(tmp), proc.pid))
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    print(f"| server, constant answer (h2load, 1 row, 16 connections; median of {args.rounds}) "
          "| req/s | serving thread, us/request | other threads, us/request |")  # fmt: skip
    print("|---|---|---|---|")
    for kind in SERVERS:
        rate, main_us, other_us = (statistics.median(m[i] for m in measured[kind]) for i in range(3))
        print(f"| {kind} | {rate:,.0f} | {main_us:.0f} | {other_us:.0f} |")


if __name__ == "__main__":
    main()
