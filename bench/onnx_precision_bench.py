"""What float64 ONNX graphs cost against float32, per predict call, in one run.

    .venv/bin/python bench/onnx_precision_bench.py [--repeat 2000]

For each model (iris LogisticRegression; a 100-tree RandomForestClassifier on 20 features) and
each batch size (1, 32 and 1,024 rows), the median of ``--repeat`` timed ``session.run`` calls
with the float64 graph and with the float32 graph, interleaved, and their ratio. Single
threaded sessions, as the gateway runs them (no spinning).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
from sklearn.datasets import load_iris, make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from lockgate.loader.onnx.fast_path import convert_to_bytes  # noqa: E402
from lockgate.loader.onnx.session import build_session  # noqa: E402


def timed(session: object, rows: np.ndarray, repeat: int) -> float:
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        session.run(None, {name: rows})  # type: ignore[attr-defined]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    X_iris, y_iris = load_iris(return_X_y=True)
    X_rf, y_rf = make_classification(n_samples=4000, n_features=20, random_state=0)
    models = [
        ("iris LogisticRegression", LogisticRegression(max_iter=1000).fit(X_iris, y_iris), X_iris),
        ("100-tree RandomForestClassifier", RandomForestClassifier(100, random_state=0).fit(X_rf, y_rf), X_rf),
    ]
    print(f"{'model':<34}{'rows':>6}{'float32 us':>12}{'float64 us':>12}{'f64/f32':>9}")
    for name, model, X in models:
        sessions = {p: build_session(convert_to_bytes(model, X.shape[1], p)) for p in ("float32", "float64")}
        for n in (1, 32, 1024):
            rows = np.resize(X, (n, X.shape[1]))
            results = {"float32": [], "float64": []}
            for _ in range(3):  # interleave, so drift hits both alike
                for precision, dtype in (("float32", np.float32), ("float64", np.float64)):
                    chunk = max(args.repeat // 3, 1) if n < 1024 else max(args.repeat // 30, 1)
                    results[precision].append(timed(sessions[precision], rows.astype(dtype), chunk))
            f32, f64 = statistics.median(results["float32"]), statistics.median(results["float64"])
            print(f"{name:<34}{n:>6}{f32 * 1e6:>12.1f}{f64 * 1e6:>12.1f}{f64 / f32:>9.2f}")


if __name__ == "__main__":
    main()
