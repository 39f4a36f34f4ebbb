"""The demo behind ``make serve``: what a data scientist does, on lockgate's embedded defaults.

1. commits scikit-learn's diabetes data set to ``lockgate://datasets@main``;
2. trains a 100-tree RandomForestRegressor and logs it through the ``lockgate://`` MLflow
   artifact repository into ``lockgate://models@main``, registered as ``diabetes``, with the
   dataset commit recorded on the run (tag ``lockgate.dataset``);
3. trains version 2 with 20 more trees (warm start) and logs it the same way;
4. moves stage Production and alias ``champion`` to the newest version;
5. logs one `legacy` model into MLflow's own artifact store (for `lockgate import`);
6. prints the store log and how much of version 2 was already stored by version 1.

Everything lives under ``.lockgate/`` (sqlite registry and store). Running it again reuses
what exists. Environment: LOCKGATE_STORE, MLFLOW_TRACKING_URI override the defaults.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from pathlib import Path

HOME = Path(".lockgate")
os.environ.setdefault("LOCKGATE_STORE", str(HOME / "store"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{HOME / 'mlflow.db'}")
warnings.filterwarnings("ignore")

import cloudpickle  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

from lockgate.store import Store, StoreError  # noqa: E402

MODEL = "diabetes"
LEGACY_MODEL = "legacy"
# What the models need, pinned to what trained them (what MLflow's inference would write).
REQUIREMENTS = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
                f"cloudpickle=={cloudpickle.__version__}", f"pandas=={pd.__version__}"]  # fmt: skip
LEGACY_EXPERIMENT = "lockgate-demo-legacy"
DATASET_PATH = "diabetes/train.csv"
EXPERIMENT = "lockgate-demo"
console = Console(soft_wrap=True)


def commit_dataset(store: Store) -> tuple[str, pd.DataFrame]:
    frame = load_diabetes(as_frame=True).frame
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    data = buf.getvalue().encode()
    try:
        head = store.resolve("datasets", "main")
        if store.read_file(head, DATASET_PATH) == data:
            console.print(f"dataset already at lockgate://datasets@{head[:12]}/{DATASET_PATH}")
            return head, frame
    except StoreError:  # first run: no repo or no file yet
        pass
    result = store.commit_files("datasets", "main", [(DATASET_PATH, data)], message="diabetes training data")
    console.print(f"committed dataset: lockgate://datasets@{result.commit_id[:12]}/{DATASET_PATH}")
    return result.commit_id, frame


def log_version(frame: pd.DataFrame, dataset_commit: str, trees: int) -> str:
    features = frame.drop(columns=["target"])
    target = frame["target"]
    model = RandomForestRegressor(n_estimators=100, random_state=0, warm_start=True, n_jobs=-1)
    model.fit(features, target)
    if trees > 100:
        model.set_params(n_estimators=trees)
        model.fit(features, target)
    with mlflow.start_run() as run:
        mlflow.set_tag("lockgate.dataset", f"lockgate://datasets@{dataset_commit}/{DATASET_PATH}")
        mlflow.log_params({"n_estimators": trees})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            input_example=features.head(5),
            # cloudpickle, not MLflow's default skops: skops zips name every tree array per
            # process, so a warm-started forest shares ~11 % of its chunks with its parent
            # instead of ~82 % (docs/store.md, "Dedup and model formats").
            serialization_format="cloudpickle",
            # Named, not inferred: MLflow infers requirements by loading the model in a fresh
            # Python process, ~9 s of every log_model on a 2-core machine.
            pip_requirements=REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    console.print(f"logged {MODEL} version {version} ({trees} trees) from run {run.info.run_id}")
    return version


def log_legacy_model(client: MlflowClient, frame: pd.DataFrame) -> None:
    """One version stored the way MLflow stores it without lockgate (files in MLflow's own
    artifact store), so that `lockgate import models:/legacy/1 ...` has something to import."""
    if client.search_model_versions(f"name='{LEGACY_MODEL}'"):
        return
    from sklearn.linear_model import LinearRegression

    experiment = mlflow.get_experiment_by_name(LEGACY_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else mlflow.create_experiment(LEGACY_EXPERIMENT, artifact_location=(HOME / "mlartifacts").resolve().as_uri())
    )
    features = frame.drop(columns=["target"])
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.sklearn.log_model(
            LinearRegression().fit(features, frame["target"]),
            name="model",
            registered_model_name=LEGACY_MODEL,
            input_example=features.head(5),
            serialization_format="cloudpickle",
            pip_requirements=REQUIREMENTS,
        )
    console.print(f"logged {LEGACY_MODEL} version 1 into MLflow's own artifact store (for `lockgate import`)")


def chunk_bytes(store: Store, commit: str, prefix: str) -> dict[str, int]:
    chunks: dict[str, int] = {}
    for entry in store.list_files(commit, prefix).values():
        for ref in store.manifest(entry.manifest_id).chunks:
            chunks[ref.chunk_id] = ref.length
    return chunks


def main() -> None:
    HOME.mkdir(exist_ok=True)
    store = Store.open(os.environ["LOCKGATE_STORE"], create=True)
    dataset_commit, frame = commit_dataset(store)

    client = MlflowClient()
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location="lockgate://models@main/mlflow")
    mlflow.set_experiment(EXPERIMENT)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    if len(versions) < 2:
        for trees in (100, 120)[len(versions) :]:
            versions.append(int(log_version(frame, dataset_commit, trees)))
    else:
        console.print(f"{MODEL} already has versions {versions}: reusing them")
    newest = str(max(versions))
    client.transition_model_version_stage(MODEL, newest, "Production", archive_existing_versions=True)
    client.set_registered_model_alias(MODEL, "champion", newest)
    log_legacy_model(client, frame)
    mlflow.set_experiment(EXPERIMENT)

    table = Table("version", "stage", "weights commit", "files", "bytes", "already stored by the previous version")
    previous: dict[str, int] | None = None
    for number in versions[-2:]:
        mv = client.get_model_version(MODEL, str(number))
        logged = client.get_logged_model(mv.source.removeprefix("models:/"))
        commit = logged.tags["lockgate.commit"]
        prefix = logged.tags["lockgate.uri"].split("/", 3)[3]
        chunks = chunk_bytes(store, commit, prefix)
        total = sum(chunks.values())
        shared = "-" if previous is None else f"{sum(n for c, n in chunks.items() if c in previous) / total:.0%}"
        files = str(len(store.list_files(commit, prefix)))
        table.add_row(str(number), mv.current_stage, commit[:16], files, f"{total:,}", shared)
        previous = chunks
    console.print(table)
    console.print("\n[bold]store log[/] (lockgate store log lockgate://models@main -n 3):")
    for commit_id, commit in store.log("models", "main", limit=3):
        console.print(f"  {commit_id[:16]}  {commit.time}  {commit.message}")
    port = os.environ.get("LOCKGATE_PORT", "8080")
    features = frame.drop(columns=["target"]).head(2)
    payload = json.dumps({"dataframe_split": json.loads(features.to_json(orient="split", index=False))})
    console.print(
        f"\n[bold]Serving models:/{MODEL}/Production on http://127.0.0.1:{port}[/]. In another terminal, try:\n\n"
        f"  curl -s -i -X POST http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' \\\n"
        f"       -d '{payload}'\n\n"
        f"  curl -s http://127.0.0.1:{port}/endpoints/{MODEL}\n"
        f"  .venv/bin/lockgate endpoints --gateway http://127.0.0.1:{port}\n"
        f"  .venv/bin/lockgate deploy models:/{MODEL}/1 --name {MODEL}-v1 --gateway http://127.0.0.1:{port}\n"
        f"  .venv/bin/lockgate store log lockgate://models@main\n",
        highlight=False,
    )


if __name__ == "__main__":
    sys.exit(main())
