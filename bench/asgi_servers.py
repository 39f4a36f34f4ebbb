"""lockgate's own app under two ASGI servers, in one run: which one serves it faster?

    .venv/bin/python bench/asgi_servers.py [--models iris] [--pairs 2] [--seconds 4]

A = uvicorn with httptools and uvloop (``lockgate serve``, its bounded httptools protocol);
B = granian (Rust, hyper), one worker, uvloop, HTTP/1, serving the same ``create_app`` through a
factory (``bench/granian_app.py``). Both serve the same registry version from their own cache.
For 1, 32 and 1,024 rows per request, at 1 and 16 connections, with wrk and with h2load
(HTTP/1.1), the two servers get back-to-back loads in ABBA order; the report gives the median of
the pairs' ratios (B / A) for req/s and for CPU per request (every process of the server's
process group, all threads), p50 and p99 beside them.

Bounded: every load has a duration; both servers listen on 127.0.0.1 and are stopped by their
process group.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from commit_ab import TABLE_HEAD, ab, measured, row, write_table  # noqa: E402
from serving_bench import (  # noqa: E402
    VENV_BIN,
    build_models,
    free_port,
    h2load,
    register,
    split_body,
    stop_group,
    wait_ready,
    wait_settled,
    wrk,
)

Server = tuple[subprocess.Popen[bytes], str]


def start_server(kind: str, model: str, work: Path, tracking: str) -> Server:
    port = free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}",
           "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking, "LOCKGATE_STORE": str(work / "store"),
           "LOCKGATE_CACHE_DIR": str(work / f"cache-{model}-{kind}"), "GRANIAN_APP_MODEL": model}  # fmt: skip
    if kind == "uvicorn":
        command = [
            str(VENV_BIN / "lockgate"),
            "serve",
            f"models:/{model}/1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    else:
        command = [str(VENV_BIN / "granian"), "--interface", "asgi", "--factory", "--workers", "1", "--loop", "uvloop",
                   "--http", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                   "--no-ws", "granian_app:app"]  # fmt: skip
    log = work / f"{kind}-{model}.log"
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=work,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/ready", proc)
        wait_settled(url, model)
    except BaseException:
        stop_group(proc)
        raise
    return proc, url


def loads(url: str, bodies: dict[int, Path], seconds: int, log: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    found: dict[str, Callable[[], dict[str, Any]]] = {}
    for rows, body in bodies.items():
        for connections in (1, 16):
            found[f"wrk, {rows} row(s), {connections} conn(s)"] = partial(wrk, url, body, connections, seconds)
            found[f"h2load, {rows} row(s), {connections} conn(s)"] = partial(
                h2load, url + "/invocations", body, connections, seconds, grpc=False, log=log
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="iris")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    lines = [
        f"# granian (B) against uvicorn + httptools (A), lockgate's app: {args.pairs} ABBA pairs of "
        f"{args.seconds} s per load; median of the pairs' B/A ratios; CPU: the server's process group, per request",
        "",
        *TABLE_HEAD,
    ]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lockgate-asgi-servers-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models(args.models.split(","))
        register(models, work, tracking)
        for model in models:
            bodies = {}
            for rows in (1, 32, 1024):
                bodies[rows] = work / f"{model.name}-{rows}.json"
                bodies[rows].write_bytes(split_body(model.frame, rows))
            servers = {kind: start_server(kind, model.name, work, tracking) for kind in ("uvicorn", "granian")}
            try:
                per_server = {kind: loads(url, bodies, args.seconds, work / f"h2load-{kind}.log")
                              for kind, (_proc, url) in servers.items()}  # fmt: skip
                for kind in servers:  # warm-up
                    per_server[kind]["wrk, 1 row(s), 16 conn(s)"]()
                for label in per_server["uvicorn"]:
                    load_a = partial(measured, per_server["uvicorn"][label], servers["uvicorn"][0].pid)
                    load_b = partial(measured, per_server["granian"][label], servers["granian"][0].pid)
                    result = ab(load_a, load_b, args.pairs)
                    results.append(result)
                    line = row(model.name, label, result)
                    print(line, flush=True)
                    lines.append(line)
            finally:
                for proc, _url in servers.values():
                    stop_group(proc)
    ratios = statistics.median(r["req_s"] for r in results)
    cpu = statistics.median(r["cpu"] for r in results)
    lines += ["", f"median over the loads: req/s B/A {ratios:.3f}, CPU B/A {cpu:.3f}"]
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
