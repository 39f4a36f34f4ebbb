"""What tracing costs when it is off: the data plane's envelope and the batcher, two commits, in process.

    .venv/bin/python bench/tracing_off_cost.py --baseline REV [--requests 20000] [--pairs 4]

End to end (``bench/commit_ab.py``), two servers on this 2-core machine differ by a few per cent
from pair to pair, more than the cost in question. This takes away the network, the HTTP stack and
the model: each process serves ``--requests`` 1-row requests through ``DataPlane.serve`` and a
batching ``Batcher`` (a predict that returns at once), the code tracing touches on every request,
and reports CPU microseconds per request. The baseline (a commit before the tracing code) runs
from a temporary git worktree on ``PYTHONPATH``, the candidate from this checkout; A and B
alternate (ABBA), and the report gives each side's median and their ratio. Tracing is off (no
``OTEL_*``), as it is by default.

Bounded: each process does a fixed number of requests; the worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a child process whose PYTHONPATH names the tree under test.
CHILD = r"""
import asyncio, json, sys, time
from types import SimpleNamespace
import numpy as np
from prometheus_client import CollectorRegistry
from lockgate.gateway.serving.batcher import Batcher
from lockgate.gateway.serving.data_plane import Answer, DataPlane, Route
from lockgate.monitoring.serving_metrics import ServingMetrics
import lockgate

requests = int(sys.argv[1])

async def main():
    deployment = SimpleNamespace(live=SimpleNamespace(inflight=0, closed=False), version_label="1")
    batcher = Batcher(lambda m: m[:, 0], name="b", enabled=True, max_rows=256, max_wait_seconds=0.0,
                      inflight=lambda: deployment.live.inflight)
    plane = DataPlane(lambda name: None, ServingMetrics(CollectorRegistry()), timeout=60)
    matrix = np.ones((1, 4))

    async def work():
        predictions, seconds = await batcher.predict(matrix)
        return Answer(predictions, 200, 1, seconds)

    for _ in range(2000):  # warm-up
        route = Route("e", None, deployment, "primary", "id")
        await plane.serve(route, "mlflow", work)
    started = time.process_time()
    for _ in range(requests):
        route = Route("e", None, deployment, "primary", "id")
        await plane.serve(route, "mlflow", work)
    return (time.process_time() - started) / requests * 1e6

print(json.dumps({"us": asyncio.run(main()), "from": lockgate.__file__}))
"""


def _env(tree: Path) -> dict[str, str]:
    # A fixed hash seed: dict and set layouts (and so instruction counts) are the same run to run.
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    for name in [k for k in env if k.startswith("OTEL_")]:
        del env[name]
    return env


def run(tree: Path, requests: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(requests)], env=_env(tree), capture_output=True,
                         text=True, check=True, timeout=600, cwd=tree)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["from"].startswith(str(tree)), result  # the tree under test, not another install
    return float(result["us"])


def instructions(tree: Path, requests: int) -> int:
    """Instructions the whole child executes (every thread), counted by callgrind: the same for
    the same code and inputs whatever else the machine does."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", sys.executable, "-c", CHILD,
             str(requests)],
            env=_env(tree), capture_output=True, text=True, check=True, timeout=3600, cwd=tree,
        )  # fmt: skip
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip())
    raise RuntimeError(f"no instruction count in valgrind's output: {out.stderr[-500:]}")


def instructions_per_request(tree: Path, few: int, many: int) -> float:
    """The difference of two runs' counts over the difference of their requests: start-up and
    warm-up cancel out."""
    return (instructions(tree, many) - instructions(tree, few)) / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="a commit without the tracing code path (A)")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument(
        "--instructions", action="store_true",
        help="count instructions per request under valgrind's callgrind instead of timing (minutes, exact)",
    )  # fmt: skip
    args = parser.parse_args()
    a_runs: list[float] = []
    b_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lockgate-tracing-off-") as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)  # fmt: skip
        try:
            if args.instructions:
                a_count = instructions_per_request(baseline, 1000, 3000)
                b_count = instructions_per_request(ROOT, 1000, 3000)
                print(
                    "# instructions per request through DataPlane.serve + Batcher.predict, tracing off "
                    "(callgrind; (I(3000) - I(1000)) / 2000)"
                )
                print(f"A ({args.baseline}): {a_count:,.0f}")
                print(f"B (this checkout): {b_count:,.0f}")
                print(f"B - A: {b_count - a_count:+,.0f} instructions per request; B/A {b_count / a_count:.4f}")
                return
            for pair in range(args.pairs):
                order = [(baseline, a_runs), (ROOT, b_runs)]
                for tree, runs in order if pair % 2 == 0 else reversed(order):
                    runs.append(run(tree, args.requests))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False,
                           capture_output=True)  # fmt: skip
    a, b = statistics.median(a_runs), statistics.median(b_runs)
    print(
        f"# CPU us per request through DataPlane.serve + Batcher.predict, tracing off, {args.requests} requests "
        f"per run, {args.pairs} ABBA pairs"
    )
    print(f"A ({args.baseline}): median {a:.2f} us {[round(x, 2) for x in a_runs]}")
    print(f"B (this checkout): median {b:.2f} us {[round(x, 2) for x in b_runs]}")
    print(f"B - A: {b - a:+.2f} us per request; B/A {b / a:.3f}")


if __name__ == "__main__":
    main()
