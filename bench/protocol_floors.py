"""The floor of each protocol's server in this Python: what a server that does no work at all
serves, 1 small request at 16 connections, with the same load generator (h2load) as
``serving_bench.py --protocols-only``.

    .venv/bin/python bench/protocol_floors.py [--seconds 5] [--rounds 2]

Four servers, each answering a constant:
  - uvicorn + httptools + uvloop, a bare ASGI app (what ``/invocations`` and V2 REST run on,
    before FastAPI and lockgate's own work);
  - ``grpc.aio`` on uvloop, with the OIP proto's generated servicer (what lockgate's V2 gRPC
    runs on), and on asyncio's default loop;
  - grpcio's thread-pool server (``grpc.server``), with a generic bytes handler.

The ratio of the gRPC floor to the REST floor bounds what any gRPC handler in this process can
reach against REST: a server whose fixed cost per call is several times the other's cannot be
as fast on the same core whatever its handler does. The figures go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("uvicorn-asgi", "grpc-aio-uvloop", "grpc-aio-asyncio", "grpc-sync-threads")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(kind: str, port: int) -> None:
    """Run one constant-answer server on 127.0.0.1:port until killed (in a child process)."""
    if kind == "uvicorn-asgi":
        import uvicorn

        body = b'{"predictions": [0]}'

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] != "http":
                return
            while (await receive()).get("more_body"):
                pass
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", loop="uvloop", http="httptools")
        return
    import grpc

    sys.path.insert(0, str(ROOT))
    from gateway.grpc_server import protos, services

    tensor = protos.ModelInferResponse.InferOutputTensor(name="predict", datatype="INT64", shape=[1])
    response = protos.ModelInferResponse(model_name="m", model_version="1", outputs=[tensor],
                                         raw_output_contents=[b"\0" * 8])  # fmt: skip
    if kind == "grpc-sync-threads":
        from concurrent import futures

        raw = response.SerializeToString()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(lambda r, c: raw)}
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return

    class Constant(services.GRPCInferenceServiceServicer):  # type: ignore[misc, name-defined]
        async def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]
            return response

    async def main() -> None:
        server = grpc.aio.server()
        services.add_GRPCInferenceServiceServicer_to_server(Constant(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    if kind == "grpc-aio-uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def load(kind: str, port: int, seconds: int, work: Path) -> float:
    """h2load's req/s against one server: HTTP/1.1 for REST, HTTP/2 for gRPC, as the serving bench."""
    h2load = shutil.which("h2load") or "h2load"
    if kind == "uvicorn-asgi":
        body = work / "rest.json"
        body.write_bytes(b'{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}')
        command = [h2load, "--h1", "-H", "content-type: application/json", f"http://127.0.0.1:{port}/invocations"]
    else:
        sys.path.insert(0, str(ROOT))
        import pandas as pd

        from bench.serving_bench import grpc_body

        body = work / "grpc.bin"
        body.write_bytes(grpc_body(pd.DataFrame({"a": [1.0, 2.0]}), 1, "m"))
        command = [h2load, "-H", "content-type: application/grpc", "-H", "te: trailers",
                   f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"]  # fmt: skip
    command[1:1] = ["-c", "16", "-m", "1", "-D", str(seconds), "-d", str(body)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("finished in"):
            return float(line.split(",")[1].split()[0])
    raise RuntimeError(f"h2load printed no rate:\n{out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    rates: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    with tempfile.TemporaryDirectory(prefix="lockgate-floors-") as tmp:
        for _ in range(args.rounds):
            for kind in SERVERS:  # interleaved rounds: each server sees the machine of the others
                port = free_port()
                command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                proc = subprocess.Popen(command, env=env, start_new_session=True)
                try:
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            socket.create_connection(("127.0.0.1", port), timeout=1).close()
                            break
                        except OSError:
                            if time.monotonic() > deadline or proc.poll() is not None:
                                raise RuntimeError(f"{kind} did not start") from None
                            time.sleep(0.1)
                    load(kind, port, 1, Path(tmp))  # warm-up
                    rates[kind].append(load(kind, port, args.seconds, Path(tmp)))
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    rest = statistics.median(rates["uvicorn-asgi"])
    print(f"| server (constant answer, 1 row, 16 connections, h2load) | req/s, median of {args.rounds} | / uvicorn |")
    print("|---|---|---|")
    for kind in SERVERS:
        rate = statistics.median(rates[kind])
        print(f"| {kind} | {rate:,.0f} | {rate / rest:.2f} |")


if __name__ == "__main__":
    main()
