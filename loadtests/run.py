"""``make loadtest``: start the demo gateway, run the locust scenarios headless, stop everything.

    .venv/bin/python loadtests/run.py [--duration 60s] [--users 16] [--scenarios predictions,swap,follow,canary]

1. Runs the demo (``examples/diabetes_demo.py``) into a fresh directory: a sqlite registry and
   a local store with versions 1 and 2 of ``diabetes``, alias ``champion`` on version 2.
2. Starts ``lockgate serve models:/diabetes@champion`` on 127.0.0.1 (a free port), following
   the alias every second.
3. Runs each scenario with ``locust --headless -t DURATION``, writing CSV and HTML reports to
   ``--out`` (default loadtests/reports). A scenario fails when its failure ratio or p95 passes
   the limits (--max-fail-ratio, --max-p95-ms) or its own check fails (swaps, follow).
4. Stops the gateway by its pid and exits non-zero if any scenario failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, stop_group  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SCENARIOS = ("predictions", "swap", "follow", "canary")


def prepare_demo(work: Path, env: dict[str, str]) -> None:
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "diabetes_demo.py")],
        cwd=work, env=env, check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if demo.returncode != 0:
        raise SystemExit(f"the demo failed (exit {demo.returncode}):\n{demo.stdout[-2000:]}\n{demo.stderr[-3000:]}")


def start_gateway(work: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = (work / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "lockgate"), "serve", "models:/diabetes@champion", "--host", "127.0.0.1", "--port", str(port)],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: see {work / 'gateway.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    stop_group(proc)
    raise SystemExit("the gateway was not ready within 120 s")


def aggregated(csv_prefix: Path) -> dict[str, str]:
    with (csv_prefix.parent / f"{csv_prefix.name}_stats.csv").open() as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="60s", help="locust -t per scenario (default 60s)")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--max-fail-ratio", default="0")
    parser.add_argument("--max-p95-ms", default="1000")
    parser.add_argument("--move-every", default="3", help="seconds between alias moves (swap, follow)")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests" / "reports")
    parser.add_argument(
        "--demo-dir",
        type=Path,
        help="keep the demo registry and store here, and reuse them when they are already there "
        "(default: a fresh temporary directory per run)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    failed = []
    with tempfile.TemporaryDirectory(prefix="lockgate-loadtest-") as tmp:
        work = args.demo_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "LOCKGATE_STORE": str(work / "store"),
            "LOCKGATE_CACHE_DIR": str(work / "cache"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            # One database for both: an MLFLOW_REGISTRY_URI inherited from the shell would split them.
            "MLFLOW_REGISTRY_URI": f"sqlite:///{work / 'mlflow.db'}",
            "LOCKGATE_FOLLOW_INTERVAL": "1",
        }
        if (work / "mlflow.db").is_file() and (work / "store").is_dir():
            print(f"reusing the demo registry and store in {work}", flush=True)
        else:
            print("preparing the demo registry and store ...", flush=True)
            prepare_demo(work, env)
        for scenario in args.scenarios.split(","):
            if scenario not in SCENARIOS:
                raise SystemExit(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")
            port = free_port()
            gateway = start_gateway(work, env, port)  # a fresh gateway per scenario: results stand alone
            prefix = args.out / scenario
            try:
                locust_env = {
                    **env,
                    "LOADTEST_MAX_FAIL_RATIO": args.max_fail_ratio,
                    "LOADTEST_MAX_P95_MS": args.max_p95_ms,
                    "LOADTEST_MOVE_EVERY": args.move_every,
                }
                users = str(min(args.users, 8) if scenario == "follow" else args.users)
                print(f"== {scenario}: {users} users for {args.duration} against 127.0.0.1:{port}", flush=True)
                result = subprocess.run(
                    [str(VENV_BIN / "locust"), "-f", str(ROOT / "loadtests" / f"{scenario}.py"), "--headless",
                     "-u", users, "-r", users, "-t", args.duration, "--host", f"http://127.0.0.1:{port}",
                     "--csv", str(prefix), "--html", str(prefix.with_suffix(".html")), "--only-summary",
                     "--stop-timeout", "10"],
                    env=locust_env, cwd=ROOT / "loadtests", check=False, timeout=3600,
                )  # fmt: skip
            finally:
                stop_group(gateway)
            row = aggregated(prefix)
            print(
                f"   {scenario}: {row['Request Count']} requests, {row['Failure Count']} failures, "
                f"{float(row['Requests/s']):.0f} req/s, p50 {row['50%']} ms, p95 {row['95%']} ms, "
                f"exit code {result.returncode}; reports: {prefix}_stats.csv, {prefix.with_suffix('.html')}",
                flush=True,
            )
            if result.returncode != 0:
                failed.append(scenario)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
