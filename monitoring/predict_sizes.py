"""Rows per predict call of one deployment, kept as histogram counts for the scrape.

``lockgate_batch_size_rows`` must count predict calls, not requests: under load the batcher
merges many requests into one call, and a per-request count would show 1-row "batches" while a
predict held twelve. Every predict call records here (the batcher's predict thread, MLflow's
scoring path in a worker thread, V2's pyfunc calls), and the metrics collector exports the
counts of every live deployment at scrape time, so an unloaded version's series go with it.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

# Powers of two up to the batcher's largest merge, then bulk requests.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class PredictSizes:
    def __init__(self, bounds: tuple[int, ...] = BATCH_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: past every bound (+Inf)
        self._rows = 0
        self._lock = threading.Lock()  # predict threads and the event loop both record

    def record(self, rows: int) -> None:
        """One predict call of ``rows`` rows."""
        slot = bisect_left(self._bounds, rows)  # the first bound >= rows: Prometheus' "le"
        with self._lock:
            self._counts[slot] += 1
            self._rows += rows

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """(cumulative ``(le, count)`` pairs ending with ``+Inf``, the sum of rows)."""
        with self._lock:
            counts, rows = list(self._counts), self._rows
        out, running = [], 0
        for bound, count in zip((*map(str, self._bounds), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out, float(rows)
