"""The answers a gateway remembers, so that ground truth sent later can be joined to them.

Only logged rows are remembered (the inference log's sample decides which): a label for a row
the gateway did not log, or one older than the horizon, is unmatched. The horizon is the last
``capacity`` logged rows of each endpoint (200,000 by default, ``LOCKGATE_FEEDBACK_HORIZON_ROWS``),
in memory: a restart, or another replica, does not know them; the log itself does, for an offline
join (``lockgate inference score``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class AnswerHorizon:
    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._answers: dict[str, OrderedDict[tuple[str, int], tuple[str, str, Any]]] = {}

    def remember(
        self, endpoint: str, request_id: str, rows: Sequence[int], *, version: str, role: str, answers: Sequence[Any]
    ) -> None:
        with self._lock:
            kept = self._answers.get(endpoint)
            if kept is None:
                kept = self._answers[endpoint] = OrderedDict()
            for row, answer in zip(rows, answers, strict=True):
                kept[(request_id, int(row))] = (version, role, _plain(answer))
            while len(kept) > self.capacity:
                kept.popitem(last=False)

    def find(self, endpoint: str, request_id: str, row: int) -> tuple[str, str, Any] | None:
        """(version, role, answer) of a remembered row, or None."""
        with self._lock:
            kept = self._answers.get(endpoint)
            return None if kept is None else kept.get((request_id, row))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (labels arrive as JSON values)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, list) else value
