"""Shared by the locust scenarios: payloads from the model's own input example, the pass/fail
limits that set locust's exit code, and the registry moves of the swap and follow scenarios.

Settings come from the environment (``loadtests/run.py`` sets them):
LOADTEST_ENDPOINT (default diabetes), LOADTEST_MAX_FAIL_RATIO (default 0), LOADTEST_MAX_P95_MS
(default 1000), LOADTEST_BATCH_SIZES (default "1,1,1,8,32,128": a mix, sampled uniformly).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

from locust import events
from locust.env import Environment

ENDPOINT = os.environ.get("LOADTEST_ENDPOINT", "diabetes")
MAX_FAIL_RATIO = float(os.environ.get("LOADTEST_MAX_FAIL_RATIO", "0"))
MAX_P95_MS = float(os.environ.get("LOADTEST_MAX_P95_MS", "1000"))
BATCH_SIZES = [int(n) for n in os.environ.get("LOADTEST_BATCH_SIZES", "1,1,1,8,32,128").split(",")]
# Scenario checks (swap, follow): each returns its problems when the run ends.
SCENARIO_CHECKS: list[Callable[[], list[str]]] = []


def payloads_from_example(example: dict[str, Any], seed: int = 0) -> dict[int, bytes]:
    """pandas-split bodies of each batch size, resampled from the input example's rows."""
    split = example["dataframe_split"]
    rows = split["data"]
    rng = random.Random(seed)
    out = {}
    for size in sorted(set(BATCH_SIZES)):
        data = [rng.choice(rows) for _ in range(size)]
        out[size] = json.dumps({"dataframe_split": {"columns": split["columns"], "data": data}}).encode()
    return out


@events.quitting.add_listener
def enforce_limits(environment: Environment, **_kwargs: Any) -> None:
    """Locust has no threshold flags: fail the run (exit code 1) past the limits."""
    stats = environment.stats.total
    p95 = stats.get_response_time_percentile(0.95) or 0.0
    problems = []
    if stats.num_requests == 0:
        problems.append("no requests were made")
    if stats.fail_ratio > MAX_FAIL_RATIO:
        problems.append(f"failure ratio {stats.fail_ratio:.4f} > {MAX_FAIL_RATIO}")
    if p95 > MAX_P95_MS:
        problems.append(f"p95 {p95:.0f} ms > {MAX_P95_MS:.0f} ms")
    for scenario_check in SCENARIO_CHECKS:
        problems.extend(scenario_check())
    summary = f"{stats.num_requests} requests, {stats.num_failures} failures, p95 {p95:.0f} ms"
    if problems:
        print(f"LOADTEST FAILED: {summary}: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print(f"LOADTEST PASSED: {summary}")
        environment.process_exit_code = 0
