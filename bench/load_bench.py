"""Cold-load time of a ~50 MB RandomForest, side by side, in one run:

  A. lockgate from the local-directory store    (resolve + delta fetch + load + warm-up)
  B. lockgate from a real SeaweedFS S3 store     (same)
  C. mlflow.pyfunc.load_model from MLflow's default artifact store (download + load)

    .venv/bin/python bench/load_bench.py [--repeat 3] [--trees 300]

Runs alternate A, B, C, A, B, C... and each figure is a median. Every lockgate run uses an
empty cache, so it is a true cold load; "warm" is the same version loaded again from cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import mlflow  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

from lockgate.loader.cache import ModelCache  # noqa: E402
from lockgate.loader.model_loader import ModelLoader  # noqa: E402
from lockgate.loader.registry import Resolver  # noqa: E402
from lockgate.store import Store  # noqa: E402
from tests.servers import SeaweedFS  # noqa: E402


def lockgate_load(store: Store, uri: str, cache_dir: Path, tracking_uri: str) -> tuple[float, int]:
    loader = ModelLoader(Resolver(lambda: store, tracking_uri=tracking_uri), ModelCache(cache_dir), lambda: store)
    start = time.perf_counter()
    servable = loader.resolve_and_load(uri)
    return time.perf_counter() - start, servable.report.fetch.bytes_fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trees", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lockgate-load-bench-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        mlflow.set_tracking_uri(tracking)
        X, y = make_classification(n_samples=11000, n_features=40, n_informative=20, random_state=0)
        model = RandomForestClassifier(n_estimators=args.trees, random_state=0, n_jobs=-1).fit(X, y)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("mlflow-default", artifact_location=(work / "mlartifacts").as_uri())
        )
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                model, name="model", registered_model_name="rf", input_example=X[:2], serialization_format="cloudpickle"
            )
        model_dir = Path(mlflow.artifacts.download_artifacts("models:/rf/1", dst_path=str(work / "model")))
        size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
        print(f"model: RandomForestClassifier, {args.trees} trees, 40 features, {size / 1e6:.1f} MB on disk")

        local = Store.open(str(work / "store"), create=True)
        local_uri = f"lockgate://models@{local.push(model_dir, 'models', 'main', 'rf').commit_id}/rf"
        server = SeaweedFS.start(work / "seaweedfs")
        try:
            os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
            server.client().create_bucket(Bucket="lockgate-bench")
            s3 = Store.open("s3://lockgate-bench/store", create=True, s3_endpoint_url=server.endpoint)
            s3_uri = f"lockgate://models@{s3.push(model_dir, 'models', 'main', 'rf').commit_id}/rf"

            timings: dict[str, list[float]] = {
                "A lockgate, local store": [],
                "B lockgate, SeaweedFS": [],
                "C mlflow.pyfunc.load_model": [],
            }
            for run in range(args.repeat):
                seconds, fetched = lockgate_load(local, local_uri, work / f"cache-a-{run}", tracking)
                assert fetched > 0
                timings["A lockgate, local store"].append(seconds)
                seconds, fetched = lockgate_load(s3, s3_uri, work / f"cache-b-{run}", tracking)
                assert fetched > 0
                timings["B lockgate, SeaweedFS"].append(seconds)
                start = time.perf_counter()
                (work / f"mlflow-dl-{run}").mkdir()
                loaded = mlflow.pyfunc.load_model("models:/rf/1", dst_path=str(work / f"mlflow-dl-{run}"))
                loaded.predict(X[:2])
                timings["C mlflow.pyfunc.load_model"].append(time.perf_counter() - start)
            warm, fetched = lockgate_load(local, local_uri, work / "cache-a-0", tracking)
        finally:
            server.stop()

        baseline = statistics.median(timings["C mlflow.pyfunc.load_model"])
        print(f"\ncold load, median of {args.repeat} (alternating A, B, C):")
        for name, values in timings.items():
            median = statistics.median(values)
            print(f"  {name:<30} {median:6.2f} s   ratio to MLflow {median / baseline:5.2f}")
        print(f"  {'lockgate warm (cached)':<30} {warm:6.2f} s   bytes fetched {fetched}")


if __name__ == "__main__":
    main()
