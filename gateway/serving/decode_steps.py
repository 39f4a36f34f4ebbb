"""A process-wide tally of the work the general V2 readers do: nested ``data`` elements and
shape dimensions visited (the plain readers decode in C, bounded by their schemas).

It is exported as ``lockgate_v2_decode_steps_total`` (``monitoring/decode_metrics.py``), so the
promise "a request costs work linear in its size" is something an operator, and a test against a
real gateway, can count rather than time: a 30 KB body must never cost more than about 30 K steps, whatever its shape.

One add per input on the general path only; the common plain request never touches it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()  # the readers run on the loop and in the decode pool's threads
_total = 0


def add(count: int) -> None:
    global _total  # noqa: PLW0603 - one tally per process, as process_cpu_seconds is
    with _lock:
        _total += count


def total() -> int:
    return _total
