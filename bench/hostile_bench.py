"""What hostile bodies cost, side by side, in one run: lockgate and `mlflow models serve` on the
same registered model, each sent the same hostile requests while a probe client keeps sending a
normal 1-row request. Reports each hostile request's status and time, the probe's worst latency
during it, and the server's RSS before and after.

    .venv/bin/python bench/hostile_bench.py [--bombs 2] [--columns 1000000]

Bounded: every request has a 120 s timeout, and both servers (127.0.0.1 only) are stopped by
pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import mlflow

from tests.registry_helpers import Registry, weights
from tests.servers import Server, start_lockgate, start_mlflow_models_serve, stop_group

PROBE = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}).encode()
JSON = {"Content-Type": "application/json"}


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (mlflow serves from a child)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total / 1024


def hostile_bodies(columns: int, bombs: int) -> list[tuple[str, bytes]]:
    names = [f"c{i}" for i in range(columns)]
    bomb = json.dumps({"dataframe_split": {"columns": names, "data": [[0] * columns]}}).encode()
    deep = b'{"dataframe_split": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge = b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[' + b"9" * 5000 + b", 1, 1]]}}"
    return [*[(f"column bomb {i + 1} ({len(bomb) / 1e6:.0f} MB)", bomb) for i in range(bombs)],
            ("JSON nested 100,000 deep", deep), ("5,000-digit integer", huge)]  # fmt: skip


def attack(url: str, label: str, body: bytes) -> dict[str, object]:
    worst = 0.0
    stop = threading.Event()

    def probe() -> None:
        nonlocal worst
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.post(f"{url}/invocations", content=PROBE, headers=JSON)
                worst = max(worst, time.perf_counter() - started)
                time.sleep(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        status: object = httpx.post(f"{url}/invocations", content=body, headers=JSON, timeout=120).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(timeout=130)
    return {"request": label, "status": status, "seconds": seconds, "probe_worst_ms": worst * 1000}


def run(name: str, server: Server, pid: int, bodies: list[tuple[str, bytes]]) -> None:
    httpx.post(f"{server.url}/invocations", content=PROBE, headers=JSON, timeout=60)  # warm
    before = rss_mib(pid)
    rows = [attack(server.url, label, body) for label, body in bodies]
    time.sleep(1.0)
    after = rss_mib(pid)
    print(f"\n{name}: RSS {before:.0f} MiB before, {after:.0f} MiB after ({after - before:+.0f} MiB)")
    print(f"  {'request':<28} {'status':>8} {'seconds':>8} {'probe worst':>12}")
    for row in rows:
        print(f"  {row['request']:<28} {row['status']!s:>8} {row['seconds']:>8.2f} {row['probe_worst_ms']:>10.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bombs", type=int, default=2)
    parser.add_argument("--columns", type=int, default=1_000_000)
    args = parser.parse_args()
    bodies = hostile_bodies(args.columns, args.bombs)
    with tempfile.TemporaryDirectory(prefix="lockgate-hostile-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        os.environ["LOCKGATE_STORE"] = str(work / "store")
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)
        registry = Registry(tracking, work / "store", work)
        registry.log_weights_model("hostile", weights(1, rows=64, cols=4))
        lockgate = start_lockgate(work, registry.gateway_env(), "models:/hostile/1", ready_path="/ready")
        try:
            run("lockgate", lockgate, lockgate.proc.pid, bodies)
        finally:
            lockgate.stop()
        reference = start_mlflow_models_serve(work, tracking, "models:/hostile/1")
        try:
            run("mlflow models serve", reference, reference.proc.pid, bodies)
        finally:
            stop_group(reference.proc)


if __name__ == "__main__":
    main()
