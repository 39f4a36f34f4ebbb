"""Graph-first restarts: a version whose ONNX graph passed its check serves that graph again at
its next load, re-checked against the native answers the check recorded, before the native model
is loaded; anything the record cannot vouch for loads the native model first, as before.

Real parts: sklearn, skl2onnx and onnxruntime for the records; for the gateway, a sqlite MLflow
registry, the store, and `lockgate serve` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from lockgate.loader.onnx import graph_preload
from lockgate.loader.onnx.fast_path import build_onnx_predictor, graph_from_record
from lockgate.loader.onnx.record import graph_digest, read_record, record_file
from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry
from tests.servers import start_lockgate

ROOT = Path(__file__).resolve().parents[1]


def _iris() -> tuple[LogisticRegression, list[str], np.ndarray]:
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    return model, list(iris.data.columns), iris.data.to_numpy(np.float64)


def test_a_recorded_graph_serves_without_the_estimator(tmp_path: Path) -> None:
    model, columns, rows = _iris()
    folder = tmp_path / "onnx"
    first, verdict = build_onnx_predictor(model, columns, rows, folder)
    assert first is not None and verdict.exact, verdict.reason
    record, why_not = read_record(folder, "float64")
    assert record is not None, why_not
    assert record.classifier and record.probabilities
    assert record.answers.tolist() == model.predict(rows).tolist(), "the record keeps the estimator's own answers"

    recorded, why_not = graph_from_record(folder, rows, exact=True, spinning=False)
    assert recorded is not None, why_not
    assert recorded.verdict.from_cache and recorded.verdict.exact and recorded.verdict.contract == "exact"
    assert recorded.verdict.rows_checked == len(rows)
    assert recorded.predictor.predict(rows).tolist() == model.predict(rows).tolist()


def test_a_float32_record_keeps_its_tolerance_and_exact_refuses_it(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((200, 3))
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X.sum(axis=1))
    folder = tmp_path / "onnx"
    predictor, verdict = build_onnx_predictor(model, ["a", "b", "c"], X, folder)
    assert predictor is not None and verdict.precision == "float32", verdict
    recorded, why_not = graph_from_record(folder, X, exact=False, spinning=False)
    assert recorded is not None, why_not
    assert recorded.verdict.precision == "float32" and recorded.verdict.tolerance == 1e-5
    np.testing.assert_allclose(recorded.predictor.predict(X), model.predict(X), rtol=1e-5)
    refused, why_not = graph_from_record(folder, X, exact=True, spinning=False)
    assert refused is None and "no float64 check on record" in why_not


def _tamper_answers(folder: Path) -> None:
    path = record_file(folder, "float64")
    record = json.loads(path.read_text())
    record["answers"]["values"][0] = (record["answers"]["values"][0] + 1) % 3
    path.write_text(json.dumps(record))


def _tamper_libraries(folder: Path) -> None:
    path = record_file(folder, "float64")
    record = json.loads(path.read_text())
    record["libraries"]["onnxruntime"] = "0.0.1"
    path.write_text(json.dumps(record))


def _replace_graph(folder: Path) -> None:
    # Another model's graph under this version's name: a damaged or swapped cache file.
    model, columns, rows = _iris()
    other = LogisticRegression(max_iter=500).fit(rows, (model.predict(rows) + 1) % 3)
    build_onnx_predictor(other, columns, rows, folder.parent / "other")
    (folder / "model-float64.onnx").write_bytes((folder.parent / "other" / "model-float64.onnx").read_bytes())


@pytest.mark.parametrize(
    ("damage", "rows_from", "expected"),
    [
        (_replace_graph, "same", "is not the one that was checked"),
        (_tamper_answers, "same", "labels differ"),
        (_tamper_libraries, "same", "libraries changed"),
        (lambda folder: record_file(folder, "float64").write_text("{not json"), "same", "unreadable"),
        (lambda folder: record_file(folder, "float64").unlink(), "same", "no float64 check on record"),
        (lambda folder: None, "other", "checked on other rows"),
    ],
    ids=["graph-replaced", "answers-tampered", "libraries-changed", "record-unreadable", "no-record", "other-rows"],
)
def test_the_record_refuses_what_it_cannot_vouch_for(
    tmp_path: Path, damage: Any, rows_from: str, expected: str
) -> None:
    model, columns, rows = _iris()
    folder = tmp_path / "onnx"
    predictor, _ = build_onnx_predictor(model, columns, rows, folder)
    assert predictor is not None
    damage(folder)
    check_rows = rows if rows_from == "same" else rows[:-1]
    recorded, why_not = graph_from_record(folder, check_rows, exact=False, spinning=False)
    assert recorded is None
    assert expected in why_not, why_not


def test_a_preloaded_session_is_taken_once_and_only_for_the_checked_bytes(tmp_path: Path) -> None:
    model, columns, rows = _iris()
    folder = tmp_path / "onnx"
    build_onnx_predictor(model, columns, rows, folder)
    graph = folder / "model-float64.onnx"
    digest = graph_digest(graph.read_bytes())

    graph_preload.preload([graph], spinning=False)
    assert graph_preload.take(graph, True, digest) is None, "other session options: not this session"
    session = graph_preload.take(graph, False, digest)
    assert session is not None
    feed = {session.get_inputs()[0].name: rows}
    assert session.run(None, feed)[0].tolist() == model.predict(rows).tolist()
    assert graph_preload.take(graph, False, digest) is None, "handed out once"

    graph_preload.preload([graph], spinning=False)
    assert graph_preload.take(graph, False, "0" * 64) is None, "bytes other than the checked ones"


# -- the gateway ---------------------------------------------------------------------------------

PROBE = """
import asyncio, json, sys
from lockgate.gateway.app import create_app
from lockgate.gateway.control.endpoint_spec import EndpointSpec
from lockgate.gateway.settings import Settings

app = create_app(Settings(), [EndpointSpec("first", "models:/first/1")])

async def main():
    async with app.router.lifespan_context(app):
        # Before any background work runs: what the gateway holds at the moment it is ready.
        deployment = app.state.deployer.endpoints["first"].current
        print(json.dumps({
            "sklearn_imported": "sklearn" in sys.modules,
            "native_loaded": deployment.servable.model.native_loaded,
            "serving_path": deployment.serving_path,
        }))

asyncio.run(main())
"""


def _answers(url: str, frame: pd.DataFrame) -> dict[str, Any]:
    rows = frame.head(5)
    split = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    v2 = {
        "inputs": [
            {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()} for c in rows.columns
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        "id": "graph-first",  # the answer echoes it: without one, each answer has a new id
    }
    # A request that needs the native model waits for its load (sklearn's import): seconds on a
    # busy CI machine, more than httpx's default 5 s timeout (seen once in CI).
    http = httpx.Client(timeout=120)
    answers = {
        "lean": http.post(f"{url}/invocations", json=split).content,
        # CSV is MLflow's code on the native model: a graph-first restart loads it for this.
        "csv": http.post(
            f"{url}/invocations", content=rows.to_csv(index=False), headers={"Content-Type": "text/csv"}
        ).content,
        "v2": http.post(f"{url}/v2/models/first/infer", json=v2).json(),
    }
    http.close()
    assert "outputs" in answers["v2"], answers["v2"]
    return answers


def _settled(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        state: dict[str, Any] = httpx.get(f"{url}/endpoints/first").json()
        if not state["serving"]["onnx_pending"]:
            return state
        assert time.monotonic() < deadline, "the ONNX conversion did not settle"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_restart_serves_its_checked_graph_before_the_native_model_loads(registry: Registry) -> None:
    iris = load_iris(as_frame=True)
    frame = iris.data
    store = Store.open(registry.store_root, create=True)
    store.commit_files("datasets", "main", [("iris.csv", frame.to_csv(index=False).encode())])
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_pandas(frame, source="lockgate://datasets@main/iris.csv"), context="training")
        mlflow.sklearn.log_model(
            LogisticRegression(max_iter=500).fit(frame, iris.target),
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name="first",
            input_example=frame.head(3),
        )
    env = registry.gateway_env()

    server = start_lockgate(registry.workdir, env, "models:/first/1", "--name", "first", ready_path="/ready")
    try:
        cold = _settled(server.url)
        assert cold["serving_path"] == "onnx" and not cold["load_report"]["native_deferred"]
        expected = _answers(server.url, frame)
    finally:
        server.stop()
    onnx_dir = registry.workdir / "cache" / "versions" / cold["load_report"]["key"] / ".lockgate-derived" / "onnx"
    assert record_file(onnx_dir, "float64").is_file(), "a passed check leaves its record beside the graph"

    # In process, at the moment the gateway is ready: the graph serves and sklearn is not imported.
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    at_ready = json.loads(probe.stdout.strip().splitlines()[-1])
    assert at_ready == {"sklearn_imported": False, "native_loaded": False, "serving_path": "onnx"}, at_ready

    server = start_lockgate(registry.workdir, env, "models:/first/1", "--name", "first", ready_path="/ready")
    try:
        warm = httpx.get(f"{server.url}/endpoints/first").json()
        assert warm["serving_path"] == "onnx" and warm["load_report"]["native_deferred"], warm["load_report"]
        assert warm["serving"]["onnx_check"]["from_cache"] and warm["serving"]["onnx_check"]["contract"] == "exact"
        assert warm["skew"]["tracked"] and warm["skew"]["predictions_tracked"], warm["skew"]
        assert warm["weights_commit"] == cold["weights_commit"]
        assert _answers(server.url, frame) == expected, "the same bytes as before the restart, on every path"
        # Once the registry vouches for the pin, the endpoint keeps what its files say (a bug
        # this test found: the reconciled lineage dropped the flavors, and V2 predict_proba with them).
        deadline = time.monotonic() + 60
        while not any(
            e["action"] == "reconciled" for e in httpx.get(f"{server.url}/endpoints/first").json()["history"]
        ):
            assert time.monotonic() < deadline, "the warm restart was never reconciled with the registry"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/endpoints/first").json()["flavors"] == cold["flavors"]
        assert _answers(server.url, frame) == expected, "and the same after the registry vouched for the pin"
    finally:
        server.stop()

    # A record that no longer matches the graph's answers is not trusted: the native model loads
    # before ready, the graph is checked against it (and passes), and the record is written anew.
    _tamper_answers(onnx_dir)
    tampered = record_file(onnx_dir, "float64").read_text()
    server = start_lockgate(registry.workdir, env, "models:/first/1", "--name", "first", ready_path="/ready")
    try:
        again = httpx.get(f"{server.url}/endpoints/first").json()
        assert again["serving_path"] == "onnx" and not again["load_report"]["native_deferred"], again["load_report"]
        assert again["serving"]["onnx_check"]["from_cache"], "the cached graph, re-checked against the native model"
        assert _answers(server.url, frame) == expected
    finally:
        server.stop()
    assert record_file(onnx_dir, "float64").read_text() != tampered, "the check wrote its record anew"
    record, why_not = read_record(onnx_dir, "float64")
    assert record is not None, why_not
