"""What serving-skew tracking adds per request, for 1, 32 and 1,024 rows of a 50-feature model.

    .venv/bin/python bench/skew_bench.py [--repeat 2000]

Measures exactly the request-path work the gateway does (``lockgate.gateway.serving.scoring._Capturing``):
``observe_frame`` on the DataFrame MLflow parsed, ``SkewTracker.observe`` for the inputs, and the
prediction tracker. Median over many calls, and the per-row cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockgate.gateway.serving.scoring import observe_frame
from lockgate.monitoring.profile import build_profile
from lockgate.monitoring.skew import SkewTracker

FEATURES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train = {f"f{i}": rng.normal(size=20_000) for i in range(FEATURES)}
    inputs = SkewTracker(build_profile(train))
    predictions = SkewTracker(build_profile({"prediction": rng.normal(size=20_000)}))
    print(f"skew tracking per request, {FEATURES} numeric features, median of {args.repeat}")
    for rows in (1, 32, 1024):
        frame = pd.DataFrame({c: v[:rows] for c, v in train.items()})
        predicted = rng.normal(size=rows)
        timings = []
        repeat = args.repeat if rows < 1024 else max(args.repeat // 10, 50)
        for _ in range(repeat):
            started = time.perf_counter()
            observe_frame(inputs, frame)
            predictions.observe_arrays(predicted.reshape(-1, 1), {}, rows)
            timings.append(time.perf_counter() - started)
        median = statistics.median(timings)
        print(f"  {rows:>5} rows: {median * 1e6:8.1f} µs per request ({median * 1e6 / rows:7.2f} µs per row)")


if __name__ == "__main__":
    main()
