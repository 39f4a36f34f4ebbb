"""The inference log's cost per 1-row request, in one process, with no server: making the
hand-over (``lean_logged``) and queueing it (``offer``) on the request path; filing it
(``_drain``) and writing it as Parquet (``_seal``) in the writer thread.

    .venv/bin/python bench/inference_log_writer_cost.py

Prints microseconds per request for each step (50,000 requests of a 4-column matrix). Private
members are called on purpose: each step is timed alone, with no writer thread running.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.inference_log import InferenceLog
from lockgate.gateway.serving.logged_rows import lean_logged
from lockgate.monitoring.inference_log_metrics import InferenceLogMetrics

REQUESTS = 50_000


def timed(label: str, work: Any) -> Any:
    started = time.perf_counter()
    result = work()
    print(f"{label:<12} {(time.perf_counter() - started) / REQUESTS * 1e6:6.2f} us per request")
    return result


def main() -> None:
    parser = NumericFrameParser(("a", "b", "c", "d"))
    options = SimpleNamespace(inference_log_sample=1.0, inference_log_window=10.0)
    deployment = SimpleNamespace(options=options, version_label="1", resolved=SimpleNamespace(weights_commit="w" * 64))
    route: Any = SimpleNamespace(deployment=deployment, name="iris", role="primary")
    log = InferenceLog(lambda: None, InferenceLogMetrics(CollectorRegistry()))  # type: ignore[arg-type, return-value]
    log._thread = object()  # type: ignore[assignment]  # no writer thread: each step alone
    matrices = [np.random.rand(1, 4) for _ in range(REQUESTS)]
    answers = [np.array([1]) for _ in range(REQUESTS)]
    handed = timed("lean_logged", lambda: [lean_logged(parser, m, a) for m, a in zip(matrices, answers, strict=True)])
    timed("offer", lambda: [log.offer(route, "mlflow", "id", rows) for rows in handed])
    timed("drain", log._drain)
    timed("seal", lambda: log._seal(float("inf")))


if __name__ == "__main__":
    main()
