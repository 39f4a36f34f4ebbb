"""Live model quality: how the answers an endpoint gave score against the ground truth that
arrives later (``POST /endpoints/{name}/feedback``), over the last N labelled rows of each
version and role.

A classifier (an answer that is a label: an integer, a string, a boolean) is scored by
``accuracy``; a regressor (a floating-point answer) by ``rmse``, ``mae`` and ``r2``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

CLASSIFIER_METRICS = ("accuracy",)
REGRESSOR_METRICS = ("rmse", "mae", "r2")


def is_regression(answer: Any) -> bool:
    return isinstance(answer, float | np.floating)


def same_label(answer: Any, label: Any) -> bool:
    """A label matches an answer as a value, not as a type: 1, 1.0 and True answer label 1; "1"
    is another label (as MLflow's JSON keeps them apart)."""
    if isinstance(answer, str | np.str_) or isinstance(label, str):
        return str(answer) == str(label)
    try:
        return bool(float(answer) == float(label))
    except (TypeError, ValueError):
        return False


def scores(pairs: Iterable[tuple[Any, Any]]) -> dict[str, float]:
    """The scores of (answer, label) pairs: accuracy for labels, rmse/mae/r2 for numbers. r2 is
    left out while the labels have no variance (it is undefined)."""
    pairs = list(pairs)
    if not pairs:
        return {}
    if not is_regression(pairs[0][0]):
        return {"accuracy": sum(same_label(a, y) for a, y in pairs) / len(pairs)}
    answers = np.array([float(a) for a, _ in pairs])
    labels = np.array([float(y) for _, y in pairs])
    errors = answers - labels
    out = {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}
    spread = float(np.sum((labels - labels.mean()) ** 2))
    if spread > 0:
        out["r2"] = 1.0 - float(np.sum(errors**2)) / spread
    return out


class LiveQuality:
    """The last ``rows`` labelled (answer, label) pairs of each endpoint, version and role."""

    def __init__(self, registry: CollectorRegistry, rows: int = 1000) -> None:
        self.rows = rows
        self._pairs: dict[tuple[str, str, str], deque[tuple[Any, Any]]] = {}
        self.score = Gauge(
            "lockgate_live_score", "The model's score on the last N labelled rows of its answers.",
            ["endpoint", "version", "role", "metric"], registry=registry,
        )  # fmt: skip
        self.labelled_rows = Gauge(
            "lockgate_live_score_rows", "Labelled rows the live score is taken over (at most N).",
            ["endpoint", "version", "role"], registry=registry,
        )  # fmt: skip
        self.labels = Counter(
            "lockgate_feedback_labels", "Labels received, by whether they matched an answer this gateway remembers.",
            ["endpoint", "outcome"], registry=registry,
        )  # fmt: skip

    def add(self, endpoint: str, version: str, role: str, answer: Any, label: Any) -> None:
        key = (endpoint, version, role)
        pairs = self._pairs.get(key)
        if pairs is None:
            pairs = self._pairs[key] = deque(maxlen=self.rows)
        pairs.append((answer, label))

    def publish(self, endpoint: str) -> dict[tuple[str, str], dict[str, float]]:
        """Set the gauges of every version and role of ``endpoint``; return what they say."""
        out = {}
        for (name, version, role), pairs in self._pairs.items():
            if name != endpoint:
                continue
            found = scores(pairs)
            for metric, value in found.items():
                if math.isfinite(value):
                    self.score.labels(endpoint, version, role, metric).set(value)
            self.labelled_rows.labels(endpoint, version, role).set(len(pairs))
            out[(version, role)] = found
        return out
