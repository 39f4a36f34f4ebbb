"""Two commits of lockgate side by side, in one run: does a change cost throughput or CPU?

    .venv/bin/python bench/commit_ab.py --baseline REV [--models iris,diabetes,forest,fraud] [--pairs 4]
        [--loads invocations,v2,grpc,invocations-1,v2-1] [--out bench/results/commit_ab.md]

The baseline (and ``--candidate``, when given) is checked out into a temporary git worktree and
served from it (``PYTHONPATH`` puts its packages ahead of this venv's editable install); without
``--candidate`` the working tree is served as it is. Both
serve the same registry versions, with gRPC on. For every model and every load (1 row:
``/invocations`` and V2 REST with wrk at 16 connections and at 1, V2 gRPC with h2load at 16), the
two servers get back-to-back loads in ABBA order (A = baseline, B = working tree), and the report
gives the median of the pairs' ratios (B / A) for req/s and for the server's CPU per request (the
clock ticks of every process in its process group, all their threads, over the load's requests:
this moves far less than req/s on a shared machine), with p50 and p99 beside them.

Bounded: every load has a duration, both servers (127.0.0.1 only) are stopped by their process
group, and the worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

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
    write_protocol_bodies,
    wrk,
)

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pgid: int) -> int:
    """User and system clock ticks of every live process in process group ``pgid`` (a server
    started in its own session: the server and any worker process it spawned), all threads."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone since the listing
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


Server = tuple[subprocess.Popen[bytes], str, int]  # (process, url, gRPC port)


def start_at(root: Path, model: str, work: Path, tracking: str, label: str) -> Server:
    """``lockgate serve`` of ``model`` from the tree at ``root``, ready and settled: (process, url, gRPC port)."""
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": str(root),
           "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking, "LOCKGATE_STORE": str(work / "store"),
           "LOCKGATE_CACHE_DIR": str(work / f"cache-{model}-{label}")}  # fmt: skip
    log = work / f"lockgate-{model}-{label}.log"
    # A tree from before the one namespace (lockgate/) has its CLI at gateway.cli.main; the venv's
    # console script imports lockgate.gateway.cli.main, which such a tree does not have.
    cli = "lockgate.gateway.cli.main" if (root / "lockgate").is_dir() else "gateway.cli.main"
    proc = subprocess.Popen(
        [str(VENV_BIN / "python"), "-c", f"from {cli} import main; main()", "serve", f"models:/{model}/1",
         "--grpc-port", str(grpc_port), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/ready", proc)
        wait_settled(url, model)
    except BaseException:
        stop_group(proc)
        raise
    return proc, url, grpc_port


def measured(load: Callable[[], dict[str, Any]], pid: int) -> dict[str, Any]:
    before = cpu_ticks(pid)
    result = load()
    result["cpu_us"] = (cpu_ticks(pid) - before) * TICK_US / max(result["requests"], 1)
    return result


def ab(load_a: Callable[[], dict[str, Any]], load_b: Callable[[], dict[str, Any]], pairs: int) -> dict[str, Any]:
    a_runs, b_runs = [], []
    for index in range(pairs):
        if index % 2 == 0:
            a_runs.append(load_a())
            b_runs.append(load_b())
        else:
            b_runs.append(load_b())
            a_runs.append(load_a())
    pairs_of = list(zip(a_runs, b_runs, strict=True))
    return {
        "req_s": statistics.median(b["req_s"] / a["req_s"] for a, b in pairs_of),
        "req_s_pairs": [round(b["req_s"] / a["req_s"], 3) for a, b in pairs_of],
        "cpu": statistics.median(b["cpu_us"] / a["cpu_us"] for a, b in pairs_of),
        "a": {k: statistics.median(r[k] for r in a_runs) for k in ("req_s", "cpu_us", "p50_ms", "p99_ms")},
        "b": {k: statistics.median(r[k] for r in b_runs) for k in ("req_s", "cpu_us", "p50_ms", "p99_ms")},
        "errors": sum(int(r["errors"]) for r in a_runs + b_runs),
    }


class Bodies:
    """One model's 1-row request bodies, and the loads that send them."""

    def __init__(self, model: str, split_file: Path, v2_file: Path, grpc_file: Path, log: Path) -> None:
        self.model, self.split_file, self.v2_file, self.grpc_file, self.log = model, split_file, v2_file, grpc_file, log

    def loads(
        self, url: str, grpc_port: int, seconds: int, chosen: list[str]
    ) -> dict[str, Callable[[], dict[str, Any]]]:
        grpc_url = f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ModelInfer"
        infer = f"/v2/models/{self.model}/infer"
        every = {
            "invocations": ("/invocations (wrk, 16 conns)", partial(wrk, url, self.split_file, 16, seconds)),
            "v2": ("V2 REST (wrk, 16 conns)", partial(wrk, url, self.v2_file, 16, seconds, infer)),
            "grpc": ("V2 gRPC (h2load, 16 conns)",
                     partial(h2load, grpc_url, self.grpc_file, 16, seconds, grpc=True, log=self.log)),
            "invocations-1": ("/invocations (wrk, 1 conn)", partial(wrk, url, self.split_file, 1, seconds)),
            "v2-1": ("V2 REST (wrk, 1 conn)", partial(wrk, url, self.v2_file, 1, seconds, infer)),
        }  # fmt: skip
        return dict(every[name] for name in chosen)


# The table every A/B bench prints (commit_ab.py, asgi_servers.py, grpc_vs_rest.py), one ``row`` per load.
TABLE_HEAD = [
    "| model | load | req/s B/A (pairs) | CPU per request B/A | req/s A, B | CPU us A, B | p50 ms A, B "
    "| p99 ms A, B | errors |",
    "|---|---|---|---|---|---|---|---|---|",
]


def write_table(lines: list[str], out: Path | None) -> None:
    """Print the table, and write it to ``out`` when given."""
    print("\n" + "\n".join(lines))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")


def row(model: str, protocol: str, result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    return (
        f"| {model} | {protocol} | {result['req_s']:.3f} {result['req_s_pairs']} | **{result['cpu']:.3f}** "
        f"| {a['req_s']:,.0f}, {b['req_s']:,.0f} | {a['cpu_us']:.0f}, {b['cpu_us']:.0f} "
        f"| {a['p50_ms']:.2f}, {b['p50_ms']:.2f} | {a['p99_ms']:.1f}, {b['p99_ms']:.1f} | {result['errors']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the git revision to compare against (A)")
    parser.add_argument(
        "--candidate", help="the git revision to measure (B); default: the working tree as it is", default=None
    )
    parser.add_argument("--models", default="iris,diabetes,forest,fraud")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load (default 5)")
    parser.add_argument("--pairs", type=int, default=4, help="ABBA pairs per ratio (default 4)")
    parser.add_argument(
        "--loads",
        default="invocations,v2,grpc,invocations-1,v2-1",
        help="which loads, of invocations, v2, grpc (16 connections) and invocations-1, v2-1 (1)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    chosen = args.loads.split(",")
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        f"# {args.candidate or 'the working tree'} (B) against {args.baseline} = {revision} (A): 1 row, "
        f"{args.pairs} ABBA pairs of {args.seconds} s; median of the pairs' B/A ratios; CPU: the server's "
        "process group, per request",
        "",
        *TABLE_HEAD,
    ]
    with tempfile.TemporaryDirectory(prefix="lockgate-commit-ab-") as tmp:
        work = Path(tmp)
        baseline, candidate = work / "baseline", work / "candidate" if args.candidate else ROOT
        trees = [(baseline, args.baseline)] + ([(candidate, args.candidate)] if args.candidate else [])
        for tree, rev in trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                           capture_output=True)  # fmt: skip
        try:
            tracking = f"sqlite:///{work / 'mlflow.db'}"
            models = build_models(args.models.split(","))
            register(models, work, tracking)
            for model in models:
                split_file = work / f"{model.name}-1.json"
                split_file.write_bytes(split_body(model.frame, 1))
                v2_file, _matrix, grpc_file = write_protocol_bodies(model, work)
                servers = {"A": start_at(baseline, model.name, work, tracking, "A"),
                           "B": start_at(candidate, model.name, work, tracking, "B")}  # fmt: skip
                try:
                    bodies = Bodies(model.name, split_file, v2_file, grpc_file, work / "h2load.log")
                    per_server = {label: bodies.loads(url, grpc_port, args.seconds, chosen)
                                  for label, (_proc, url, grpc_port) in servers.items()}  # fmt: skip
                    for protocol in per_server["A"]:
                        for label in ("A", "B"):  # warm-up
                            per_server[label][protocol]()
                        load_a = partial(measured, per_server["A"][protocol], servers["A"][0].pid)
                        load_b = partial(measured, per_server["B"][protocol], servers["B"][0].pid)
                        line = row(model.name, protocol, ab(load_a, load_b, args.pairs))
                        print(line, flush=True)
                        lines.append(line)
                finally:
                    for proc, _url, _grpc in servers.values():
                        stop_group(proc)
                    time.sleep(0.5)
        finally:
            for tree, _rev in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                               capture_output=True)  # fmt: skip
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
