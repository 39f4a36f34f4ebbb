"""What the inference log costs the request path: one model served twice from this tree, with
``--inference-log-sample 0`` (A, off) and ``1`` (B, every row logged), 1-row loads at 16
connections in ABBA order, in one run.

    .venv/bin/python bench/inference_log_bench.py [--model iris] [--seconds 5] [--pairs 4]

Reports the median of the pairs' B/A ratios for req/s and CPU per request (goal: req/s at least
0.9x), and what the log sustained on B: rows committed per second of load, rows dropped (a full
queue), and its commit lag at the end. Bounded: every load has a duration; both servers
(127.0.0.1 only) are stopped by their process group.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from commit_ab import Bodies, ab, measured  # noqa: E402
from serving_bench import (  # noqa: E402
    VENV_BIN,
    build_models,
    free_port,
    register,
    split_body,
    stop_group,
    wait_ready,
    wait_settled,
    write_protocol_bodies,
)


def start(model: str, work: Path, tracking: str, sample: str) -> tuple[subprocess.Popen[bytes], str, int]:
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking, "LOCKGATE_STORE": str(work / "store"),
           "LOCKGATE_CACHE_DIR": str(work / f"cache-{sample}")}  # fmt: skip
    proc = subprocess.Popen(
        [str(VENV_BIN / "lockgate"), "serve", f"models:/{model}/1", "--grpc-port", str(grpc_port),
         "--host", "127.0.0.1", "--port", str(port), "--inference-log-sample", sample,
         "--inference-log-window", "10"],
        stdout=(work / f"lockgate-{sample}.log").open("wb"), stderr=subprocess.STDOUT, env=env, cwd=work,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/ready", proc)
        wait_settled(url, model)
    except BaseException:
        stop_group(proc)
        raise
    return proc, url, grpc_port


def log_counts(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("lockgate_inference_log_rows_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = found.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_inference_log_commit_lag_seconds{"):
            found["lag"] = max(found.get("lag", 0.0), float(line.rsplit(" ", 1)[1]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="iris")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    lines = [
        f"# inference log on (B, sample 1) against off (A, sample 0): {args.model}, 1 row, 16 connections, "
        f"{args.pairs} ABBA pairs of {args.seconds} s",
        "",
        "| protocol | req/s B/A (pairs) | CPU per request B/A | req/s A, B | CPU us A, B | p99 ms A, B | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="lockgate-log-bench-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models([args.model])
        register(models, work, tracking)
        (model,) = models
        split_file = work / "split-1.json"
        split_file.write_bytes(split_body(model.frame, 1))
        v2_file, _matrix, grpc_file = write_protocol_bodies(model, work)
        servers = {"A": start(model.name, work, tracking, "0"), "B": start(model.name, work, tracking, "1")}
        try:
            bodies = Bodies(model.name, split_file, v2_file, grpc_file, work / "h2load.log")
            loads = {label: bodies.loads(url, grpc, args.seconds) for label, (_p, url, grpc) in servers.items()}
            started = time.monotonic()
            for protocol in ("/invocations (wrk)", "V2 REST (wrk)"):
                for label in ("A", "B"):
                    loads[label][protocol]()  # warm-up
                result = ab(partial(measured, loads["A"][protocol], servers["A"][0].pid),
                            partial(measured, loads["B"][protocol], servers["B"][0].pid), args.pairs)  # fmt: skip
                a, b = result["a"], result["b"]
                line = (
                    f"| {protocol} | {result['req_s']:.3f} {result['req_s_pairs']} | {result['cpu']:.3f} "
                    f"| {a['req_s']:,.0f}, {b['req_s']:,.0f} | {a['cpu_us']:.0f}, {b['cpu_us']:.0f} "
                    f"| {a['p99_ms']:.1f}, {b['p99_ms']:.1f} | {result['errors']} |"
                )
                print(line, flush=True)
                lines.append(line)
            loaded = time.monotonic() - started
            time.sleep(12)  # the last window (10 s) and its commit
            counts = log_counts(servers["B"][1])
        finally:
            for proc, _url, _grpc in servers.values():
                stop_group(proc)
    logged, dropped = counts.get("logged", 0.0), counts.get("dropped", 0.0)
    lines += [
        "",
        f"B's log: {logged:,.0f} rows committed, {dropped:,.0f} dropped, over {loaded:.0f} s of loads "
        f"(half of it on B): {logged / (loaded / 2):,.0f} rows/s sustained; commit lag at the end "
        f"{counts.get('lag', 0.0):.1f} s",
    ]
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
