"""Swap under load: the alias moves every few seconds and the gateway is told to redeploy at
once (POST /admin/endpoints), while users keep predicting. Passing means zero failed requests
and every swap answered with the version the alias points at.

    LOADTEST_MOVE_EVERY=3 locust -f loadtests/swap.py --headless -u 16 -r 16 -t 30s --host http://127.0.0.1:8080
"""

from __future__ import annotations

from typing import Any

import requests
from common import ENDPOINT, SCENARIO_CHECKS
from locust import events
from locust.env import Environment
from predictions import PredictingUser
from registry_moves import ALIAS, MODEL, Moves, start_moving

__all__ = ["PredictingUser"]
moves = Moves()
swaps: list[str] = []


@events.test_start.add_listener
def begin(environment: Environment, **_kwargs: Any) -> None:
    host = environment.host

    def redeploy(target: str) -> None:
        answer = requests.post(
            f"{host}/admin/endpoints",
            json={"name": ENDPOINT, "model_uri": f"models:/{MODEL}@{ALIAS}"},
            timeout=120,
        )
        if answer.status_code != 200:
            moves.errors.append(f"redeploy to v{target}: {answer.status_code} {answer.text[:200]}")
        elif str(answer.json().get("version")) != target:
            moves.errors.append(f"redeploy answered v{answer.json().get('version')}, the alias points at v{target}")
        else:
            swaps.append(target)

    environment.lockgate_moves = start_moving(moves, redeploy)  # type: ignore[attr-defined]


def check() -> list[str]:
    problems = list(moves.errors)
    if not swaps:
        problems.append("no swap happened during the run (is the run shorter than LOADTEST_MOVE_EVERY?)")
    print(f"swap scenario: {len(swaps)} swaps under load ({', '.join('v' + v for v in swaps)})")
    return problems


SCENARIO_CHECKS.append(check)
