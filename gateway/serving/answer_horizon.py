"""The answers a gateway remembers, so that ground truth sent later can be joined to them.

Only logged rows are remembered (the inference log's sample decides which): a label for a row
the gateway did not log, or one older than the horizon, is unmatched. The horizon is the last
``capacity`` logged rows of each endpoint (200,000 by default, ``LOCKGATE_FEEDBACK_HORIZON_ROWS``),
in memory: a restart, or another replica, does not know them; the log itself does, for an offline
join (``lockgate inference score``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any


class AnswerHorizon:
    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        # Per endpoint: the answers by (request id, row), and their keys oldest first (the ring
        # that evicts; a dict alone would scan the holes its deletions leave).
        self._answers: dict[str, dict[tuple[str, int], tuple[str, str, Any]]] = {}
        self._order: dict[str, deque[tuple[str, int]]] = {}

    def remember(
        self, endpoint: str, keys: Sequence[tuple[str, int]], answers: Sequence[Any], *, version: str, role: str
    ) -> None:
        """Remember the answer of each (request id, row) in ``keys``."""
        with self._lock:
            kept = self._answers.setdefault(endpoint, {})
            order = self._order.setdefault(endpoint, deque())
            kept.update(zip(keys, ((version, role, answer) for answer in answers), strict=True))
            order.extend(keys)
            while len(order) > self.capacity:
                kept.pop(order.popleft(), None)

    def find(self, endpoint: str, request_id: str, row: int) -> tuple[str, str, Any] | None:
        """(version, role, answer) of a remembered row, or None."""
        with self._lock:
            kept = self._answers.get(endpoint)
            return None if kept is None else kept.get((request_id, row))
