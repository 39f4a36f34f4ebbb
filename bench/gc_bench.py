"""Garbage left by killed pushes, and what ``lockgate store gc`` frees, on a local store.

    .venv/bin/python bench/gc_bench.py [--size-mb 200] [--kills 3] [--kill-after 1.5]

1. Pushes one file of --size-mb random bytes (the version that stays).
2. --kills times: starts ``lockgate store push`` of another file of that size and SIGKILLs it
   after --kill-after seconds (mid-upload), as an OOM-killed or preempted job would end.
3. Retires a version: pushes a third file to a branch and deletes the branch.
4. Measures the store (bytes on disk) before and after ``lockgate store gc --grace 0s``, the
   time gc takes, and runs ``lockgate store verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
LOCKGATE = str(VENV_BIN / "lockgate")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def lockgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOCKGATE, *args], env=env, capture_output=True, text=True, check=True, timeout=3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-after", type=float, default=1.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockgate-gc-bench-") as tmp:
        work = Path(tmp)
        store = work / "store"
        env = {**os.environ, "LOCKGATE_STORE": str(store)}
        size = args.size_mb * 1024 * 1024
        for name in ("kept.bin", "killed.bin", "retired.bin"):
            with (work / name).open("wb") as handle:
                handle.write(os.urandom(size))
        lockgate(env, "store", "push", str(work / "kept.bin"), "lockgate://models@main/kept.bin")
        kept = du(store)
        for attempt in range(args.kills):
            proc = subprocess.Popen(
                [LOCKGATE, "store", "push", str(work / "killed.bin"), f"lockgate://models@main/killed-{attempt}.bin"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(args.kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        after_kills = du(store)
        lockgate(env, "store", "branch", "lockgate://models@main", "retired")
        lockgate(env, "store", "push", str(work / "retired.bin"), "lockgate://models@retired/retired.bin")
        lockgate(env, "store", "branch", "--delete", "lockgate://models@retired")
        before = du(store)
        dry = json.loads(lockgate(env, "store", "gc", "--dry-run", "--grace", "0s", "--json").stdout)
        started = time.perf_counter()
        report = json.loads(lockgate(env, "store", "gc", "--grace", "0s", "--json").stdout)
        seconds = time.perf_counter() - started
        after = du(store)
        verify = subprocess.run([LOCKGATE, "store", "verify"], env=env, capture_output=True, text=True, check=False)
    mb = 1024 * 1024
    print(f"one {args.size_mb} MiB version kept: store {kept / mb:.1f} MiB")
    print(f"after {args.kills} pushes killed at {args.kill_after:g} s: {after_kills / mb:.1f} MiB "
          f"({(after_kills - kept) / mb:.1f} MiB of garbage)")  # fmt: skip
    print(f"after one more version pushed to a branch and the branch deleted: {before / mb:.1f} MiB")
    print(f"gc --dry-run would free {dry['bytes_freed'] / mb:.1f} MiB; gc freed {report['bytes_freed'] / mb:.1f} MiB "
          f"in {seconds:.2f} s (the whole CLI process): {json.dumps(report['freed'])}")  # fmt: skip
    print(f"store after gc: {after / mb:.1f} MiB (kept version alone: {kept / mb:.1f} MiB); "
          f"verify exit {verify.returncode}")  # fmt: skip


if __name__ == "__main__":
    main()
