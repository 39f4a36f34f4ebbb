"""``lockgate_v2_decode_steps_total``: the work the gateway's general V2 readers did, read from a
tally the gateway keeps (a callable, so this package stays free of the gateway's imports)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class DecodeStepsCollector(Collector):
    """Exports the tally at scrape time: nested data elements and shape dimensions visited.
    Bounded by the bytes read, whatever a request's shape (a test counts it, rather than time it)."""

    def __init__(self, total: Callable[[], int]) -> None:
        self._total = total

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "lockgate_v2_decode_steps",
            "Nested data elements and shape dimensions the general V2 readers visited: work bounded by "
            "the size of what was read",
            value=self._total(),
        )
