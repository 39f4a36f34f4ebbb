"""Follow mode under load: the alias moves in the registry and nobody tells the gateway. Each
move must show up in the answers (X-Lockgate-Model-Version) before the next one. Run the
gateway with a short LOCKGATE_FOLLOW_INTERVAL (loadtests/run.py uses 1 s).

    LOADTEST_MOVE_EVERY=4 locust -f loadtests/follow.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8080
"""

from __future__ import annotations

import time
from typing import Any

import predictions  # the module, not the class: locust would run every User class it sees here
from common import SCENARIO_CHECKS
from locust import events
from locust.env import Environment
from registry_moves import Moves, start_moving

moves = Moves()
answers: list[tuple[float, str]] = []  # (monotonic time, version that answered)


class FollowingUser(predictions.PredictingUser):
    def on_answer(self, headers: dict[str, str]) -> None:
        answers.append((time.monotonic(), headers.get("X-Lockgate-Model-Version", "?")))


@events.test_start.add_listener
def begin(environment: Environment, **_kwargs: Any) -> None:
    environment.lockgate_moves = start_moving(moves)  # type: ignore[attr-defined]


def convergence_seconds() -> list[float | None]:
    """For each move, seconds until the first answer from its version (None: never, before the next move)."""
    out: list[float | None] = []
    for index, (moved_at, target) in enumerate(moves.done):
        until = moves.done[index + 1][0] if index + 1 < len(moves.done) else float("inf")
        first = next((t for t, version in answers if moved_at <= t < until and version == target), None)
        out.append(None if first is None else first - moved_at)
    return out


def check() -> list[str]:
    problems = list(moves.errors)
    seen = convergence_seconds()
    # The last move may come too close to the end to be followed; every earlier one must be.
    judged = seen[:-1] if len(seen) > 1 else seen
    if not moves.done:
        problems.append("the alias never moved during the run")
    missed = [i for i, s in enumerate(judged) if s is None]
    if missed:
        problems.append(f"moves {missed} were never served before the next move")
    shown = ", ".join("missed" if s is None else f"{s:.1f}s" for s in seen)
    print(f"follow scenario: {len(moves.done)} alias moves; served after: {shown}")
    return problems


SCENARIO_CHECKS.append(check)
