"""Where a 1,024-row request's time goes on the forest, stage by stage, in process.

    .venv/bin/python bench/request_stages.py [--model forest] [--rows 1024]

Medians of repeated calls: lean parsing (orjson + np.array), skew counting, the ONNX predict
(both cores, as the gateway runs it) and the native sklearn predict (what MLflow calls).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

from bench.serving_bench import build_models, split_body  # noqa: E402
from lockgate.gateway.serving.fast_request import NumericFrameParser  # noqa: E402
from lockgate.loader.onnx.fast_path import build_onnx_predictor  # noqa: E402
from lockgate.monitoring.profile import build_profile  # noqa: E402
from lockgate.monitoring.skew import SkewTracker  # noqa: E402


def median_ms(call: Callable[[], object], repeat: int = 20) -> float:
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="forest", choices=["iris", "diabetes", "forest"])
    parser.add_argument("--rows", type=int, default=1024)
    args = parser.parse_args()
    model = build_models([args.model])[0]
    body = split_body(model.frame, args.rows)
    columns = tuple(model.frame.columns)
    lean = NumericFrameParser(columns)
    matrix = lean.parse(body)
    assert matrix is not None
    tracker = SkewTracker(build_profile({c: model.frame[c].to_numpy() for c in columns}))
    with tempfile.TemporaryDirectory() as tmp:
        predictor, verdict = build_onnx_predictor(model.estimator, list(columns), matrix, Path(tmp), "stages")
        assert predictor is not None, verdict.reason
        native_input = model.frame.iloc[: args.rows]
        print(f"{model.description}: {args.rows} rows, body {len(body) / 1024:.0f} KiB")
        print(f"  lean parse (orjson + np.array)  {median_ms(lambda: lean.parse(body)):8.2f} ms")
        skew_ms = median_ms(lambda: tracker.observe_arrays(matrix, {}, len(matrix)))
        print(f"  skew counting                   {skew_ms:8.2f} ms")
        print(f"  ONNX predict                    {median_ms(lambda: predictor.predict(matrix)):8.2f} ms")
        print(
            f"  sklearn predict (MLflow's path) {median_ms(lambda: model.estimator.predict(native_input), 5):8.2f} ms"
        )
        print(f"  float64 matrix                  {matrix.nbytes / 1024:8.0f} KiB, {np.isfinite(matrix).all()=}")


if __name__ == "__main__":
    main()
