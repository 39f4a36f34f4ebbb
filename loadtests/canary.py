"""A canary under load: the demo's primary (models:/diabetes@champion, version 2) gets a canary
(models:/diabetes/1) at LOADTEST_CANARY_PERCENT (default 20) when the run starts. Users send
half of their requests with a route key (X-Lockgate-Route-Key, from a pool of 500 keys) and
half without. Passing means zero failed requests (and the usual p95 limit), every answer naming
its role, the canary's share of the random requests within 3 standard deviations (and 3 points)
of its percentage, and every route key reaching exactly one version.

    LOADTEST_CANARY_PERCENT=20 locust -f loadtests/canary.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8080
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from typing import Any, ClassVar

import predictions as base  # not `from ... import`: locust would run PredictingUser too
import requests
from common import ENDPOINT, SCENARIO_CHECKS
from locust import events
from locust.env import Environment

PERCENT = float(os.environ.get("LOADTEST_CANARY_PERCENT", "20"))
CANARY_URI = os.environ.get("LOADTEST_CANARY_URI", "models:/diabetes/1")
KEYS = [f"user-{i}" for i in range(500)]
random_roles: Counter[str] = Counter()
key_versions: dict[str, set[str]] = defaultdict(set)
problems: list[str] = []


@events.test_start.add_listener
def add_canary(environment: Environment, **_kwargs: Any) -> None:
    # Blocking on purpose: users start once the canary serves, so every answer counts.
    answer = requests.post(
        f"{environment.host}/admin/endpoints",
        json={"name": ENDPOINT, "canary": {"model_uri": CANARY_URI, "percent": PERCENT}},
        timeout=300,
    )
    if answer.status_code != 200 or not (answer.json().get("policy") or {}).get("canary"):
        problems.append(f"setting the canary failed: {answer.status_code} {answer.text[:300]}")


class CanaryUser(base.PredictingUser):
    def predict_with_or_without_a_key(self) -> None:
        size = random.choice(self.sizes)
        key = random.choice(KEYS) if random.random() < 0.5 else None
        headers = base.HEADERS if key is None else {**base.HEADERS, "X-Lockgate-Route-Key": key}
        with self.client.post(
            f"/endpoints/{ENDPOINT}/invocations", data=self.payloads[size], headers=headers,
            name=f"invocations [{'keyed' if key else 'random'}]", catch_response=True,
        ) as answer:  # fmt: skip
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            role, version = answer.headers.get("X-Lockgate-Role"), answer.headers.get("X-Lockgate-Model-Version")
            if role not in ("primary", "canary") or version is None:
                answer.failure(f"an answer without its role and version: {role!r} {version!r}")
                return
            if key is None:
                random_roles[role] += 1
            else:
                key_versions[key].add(version)

    # Only this task (a class that sets ``tasks`` inherits none of PredictingUser's).
    tasks: ClassVar[list[Any]] = [predict_with_or_without_a_key]


def check() -> list[str]:
    found = list(problems)
    total = sum(random_roles.values())
    if total == 0:
        return [*found, "no request without a route key was answered"]
    share = 100.0 * random_roles["canary"] / total
    sigma = 100.0 * math.sqrt(PERCENT / 100 * (1 - PERCENT / 100) / total)
    tolerance = max(3 * sigma, 3.0)
    if abs(share - PERCENT) > tolerance:
        found.append(f"canary share {share:.2f} % of {total} random requests, expected {PERCENT:g} ± {tolerance:.2f}")
    split = [k for k, versions in key_versions.items() if len(versions) != 1]
    if split:
        found.append(f"{len(split)} route keys reached two versions, e.g. {split[:3]}")
    keyed_canary = sum(1 for versions in key_versions.values() if versions == {"1"})
    print(
        f"canary scenario: {share:.2f} % of {total} random requests on the canary (set to {PERCENT:g} %); "
        f"{len(key_versions)} route keys, each on one version, {keyed_canary} of them on the canary"
    )
    return found


SCENARIO_CHECKS.append(check)
__all__ = ["CanaryUser"]
