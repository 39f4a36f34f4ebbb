"""The tree engines side by side, in process: what each costs at 1, 32 and 1,024 rows, and whether
it is exact (bit-identical to the model's own answer on the deploy check's rows, the rows at
every split threshold included).

    .venv/bin/python bench/tree_engines.py [--trees 300] [--repeat 300]

Models: an XGBClassifier and an XGBRegressor (depth 6), an LGBMClassifier and an LGBMRegressor
(31 leaves), with ``--trees`` trees on 20 features, and the diabetes RandomForestRegressor
(100 trees) and a GradientBoostingRegressor (``--trees`` stages). Engines:

- ``mlflow``: the model's own predict on a DataFrame (what MLflow's pyfunc calls; for a booster,
  a ``DMatrix`` built from it);
- ``library``: the model's own predict on a matrix, as lockgate's ``xgboost``/``lightgbm`` path
  calls it (``loader/trees/models.py``);
- ``engine``: lockgate's tree engine (onnxruntime ``TreeEnsemble``, opset 5, one thread);
- ``onnxmltools`` and ``treelite`` (its GTIL interpreter), when installed: the converters the
  engine was chosen over (``pip install onnxmltools treelite``; not dependencies of lockgate).

Prints median microseconds per call and each engine's verdict; writes ``bench/results/tree_engines.md``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_diabetes, make_classification, make_regression  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor  # noqa: E402

from bench.serving_bench import predict_seconds  # noqa: E402
from lockgate.loader.trees.answers import same_answer  # noqa: E402
from lockgate.loader.trees.choice import check_rows_for  # noqa: E402
from lockgate.loader.trees.models import describe  # noqa: E402

Predict = Callable[[np.ndarray], np.ndarray]
SIZES = (1, 32, 1024)


def models(trees: int) -> dict[str, tuple[Any, np.ndarray]]:
    import lightgbm
    import xgboost

    X, y = make_classification(n_samples=5000, n_features=20, n_informative=12, random_state=0)
    XR, yr = make_regression(n_samples=5000, n_features=20, noise=5.0, random_state=1)
    diabetes = load_diabetes()
    return {
        "XGBClassifier": (xgboost.XGBClassifier(n_estimators=trees, max_depth=6, n_jobs=2).fit(X, y), X),
        "XGBRegressor": (xgboost.XGBRegressor(n_estimators=trees, max_depth=6, n_jobs=2).fit(XR, yr), XR),
        "LGBMClassifier": (lightgbm.LGBMClassifier(n_estimators=trees, verbose=-1, n_jobs=2).fit(X, y), X),
        "LGBMRegressor": (lightgbm.LGBMRegressor(n_estimators=trees, verbose=-1, n_jobs=2).fit(XR, yr), XR),
        "RandomForestRegressor (diabetes)": (
            RandomForestRegressor(100, random_state=0).fit(diabetes.data, diabetes.target),
            diabetes.data,
        ),
        "GradientBoostingRegressor": (GradientBoostingRegressor(n_estimators=trees, random_state=0).fit(XR, yr), XR),
    }


def median_us(predict: Predict, rows: np.ndarray, repeat: int) -> float:
    return predict_seconds(predict, rows, repeat) * 1e6


def mlflow_like(model: Any, columns: list[str]) -> Predict:
    """What MLflow's pyfunc hands the model: a DataFrame (a booster: a DMatrix of it)."""
    kind = type(model).__module__.split(".", 1)[0]
    if kind == "xgboost" and type(model).__name__ == "Booster":
        import xgboost

        return lambda m: np.asarray(model.predict(xgboost.DMatrix(pd.DataFrame(m, columns=columns))))
    return lambda m: np.asarray(model.predict(pd.DataFrame(m, columns=columns)))


def native_of(estimator: Any) -> Predict:
    return lambda m: np.asarray(estimator.predict(np.asfortranarray(m)))


def optional_engines(model: Any, data: np.ndarray) -> dict[str, Predict]:
    """onnxmltools (float32 graphs) and treelite's GTIL, when installed."""
    out: dict[str, Predict] = {}
    library = type(model).__module__.split(".", 1)[0]
    try:
        import onnxruntime
        from onnxmltools import convert_lightgbm, convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        convert = {"xgboost": convert_xgboost, "lightgbm": convert_lightgbm}.get(library)
        if convert is not None:
            kwargs = {"zipmap": False} if library == "lightgbm" and hasattr(model, "classes_") else {}
            graph = convert(model, initial_types=[("input", FloatTensorType([None, data.shape[1]]))],
                            target_opset=15, **kwargs)  # fmt: skip
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(graph.SerializeToString(), options)
            native_dtype = np.asarray(model.predict(data[:2])).dtype
            out["onnxmltools"] = lambda m: (
                np.asarray(session.run(None, {"input": m.astype(np.float32)})[0]).reshape(len(m)).astype(native_dtype)
            )
    except ImportError:
        pass
    try:
        import treelite

        booster = model.get_booster() if library == "xgboost" else getattr(model, "booster_", None)
        if booster is not None:
            loaded = (treelite.frontend.from_xgboost if library == "xgboost" else treelite.frontend.from_lightgbm)(
                booster
            )
            if not hasattr(model, "classes_"):  # regressors: GTIL's raw output is the answer
                out["treelite GTIL"] = lambda m: np.asarray(treelite.gtil.predict(loaded, m, nthread=1)).reshape(len(m))
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    lines = [
        f"# tree engines in process: median µs per call ({args.repeat} calls; 1,024 rows: a tenth of them)",
        "",
        "| model | engine | exact on the check rows | 1 row µs | 32 rows µs | 1,024 rows µs |",
        "|---|---|---|---|---|---|",
    ]
    for name, (model, data) in models(args.trees).items():
        columns = [f"f{i}" for i in range(data.shape[1])]
        reference = mlflow_like(model, columns)
        sklearn_native = native_of(model) if "sklearn" in type(model).__module__ else None
        described = describe(model, sklearn_native)
        checked, around = check_rows_for(described, data[:200], frozenset())
        expected = reference(checked)
        engines: dict[str, Predict] = {"mlflow": reference, "library": described.native}
        if described.engine is not None:
            engines["engine"] = described.engine.kernel(beyond=described.native).predict
        engines |= optional_engines(model, data)
        for engine, predict in engines.items():
            try:
                differs = same_answer(expected, np.asarray(predict(checked)))
            except Exception as exc:
                differs = f"{type(exc).__name__}: {exc}"
            verdict = "yes" if differs is None else f"**no**: {differs[:90]}"
            times = [median_us(predict, np.resize(data, (size, data.shape[1])), args.repeat if size < 1024
                               else max(args.repeat // 10, 5)) for size in SIZES]  # fmt: skip
            print(f"  {name:<34} {engine:<14} exact={differs is None!s:<5} "
                  + " ".join(f"{size}:{t:,.0f}µs" for size, t in zip(SIZES, times, strict=True)))  # fmt: skip
            lines.append(f"| {name} ({around:,} threshold rows) | {engine} | {verdict} | "
                         + " | ".join(f"{t:,.0f}" for t in times) + " |")  # fmt: skip
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tree_engines.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
