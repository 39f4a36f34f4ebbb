"""Moving the model's alias in the real MLflow registry while locust's users send traffic.

LOADTEST_MODEL (default diabetes), LOADTEST_ALIAS (default champion), LOADTEST_VERSIONS
(default "1,2": the alias alternates between them), LOADTEST_MOVE_EVERY seconds (default 3).
MLFLOW_TRACKING_URI names the registry the gateway reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from mlflow import MlflowClient

MODEL = os.environ.get("LOADTEST_MODEL", "diabetes")
ALIAS = os.environ.get("LOADTEST_ALIAS", "champion")
VERSIONS = os.environ.get("LOADTEST_VERSIONS", "1,2").split(",")
MOVE_EVERY = float(os.environ.get("LOADTEST_MOVE_EVERY", "3"))


@dataclass
class Moves:
    """Each alias move: (monotonic time, target version)."""

    done: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _warm_client() -> MlflowClient:
    """MLflow's client, built and used once when locust loads the locustfile: importing MLflow
    and opening its SQLAlchemy store take seconds on a busy machine, and inside ``test_start``
    they would eat the run's time limit (locust's -t clock is already running there)."""
    client = MlflowClient()
    client.get_model_version_by_alias(MODEL, ALIAS)
    return client


CLIENT = _warm_client()


def start_moving(moves: Moves, after_move: Callable[[str], None] | None = None) -> gevent.Greenlet:
    client = CLIENT

    def loop() -> None:
        index = 0
        while True:
            gevent.sleep(MOVE_EVERY)
            index += 1
            target = VERSIONS[index % len(VERSIONS)]
            try:
                client.set_registered_model_alias(MODEL, ALIAS, target)
                moves.done.append((time.monotonic(), target))
                if after_move is not None:
                    after_move(target)
            except Exception as exc:  # recorded: the run fails on it at the end
                moves.errors.append(f"moving {ALIAS} to v{target}: {exc}")

    return gevent.spawn(loop)
