"""/metrics on a real gateway: parseable, bounded labels, no ghosts after a swap, and serving
skew measured against the endpoint's dataset commit through the whole stack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor

from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, AmountModel, Registry, weights
from tests.servers import Prometheus, Server, start_lockgate


def _families(server: Server) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"{server.url}/metrics").text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


@pytest.fixture
def diabetes_gateway(registry: Registry) -> Iterator[tuple[Server, pd.DataFrame]]:
    frame = load_diabetes(as_frame=True).frame
    store = Store.open(str(registry.store_root), create=True)
    store.commit_files("datasets", "main", [("diabetes/train.csv", frame.to_csv(index=False).encode())])
    features = frame.drop(columns=["target"])
    dataset = mlflow.data.from_pandas(frame, source="lockgate://datasets@main/diabetes/train.csv")
    mlflow.set_experiment(experiment_id=registry.experiment())
    for trees in (5, 6):
        with mlflow.start_run():
            mlflow.log_input(dataset, context="training")
            model = RandomForestRegressor(n_estimators=trees, random_state=0).fit(features, frame["target"])
            mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name="diabetes",
                input_example=features.head(3),
                serialization_format="cloudpickle",
            )
    env = registry.gateway_env()
    server = start_lockgate(registry.workdir, env, "models:/diabetes/1", ready_path="/ready")
    try:
        yield server, features
    finally:
        server.stop()


def _post_rows(server: Server, rows: pd.DataFrame, batch: int = 500) -> None:
    with httpx.Client(timeout=60) as client:
        for start in range(0, len(rows), batch):
            part = rows.iloc[start : start + batch]
            body = {"dataframe_split": json.loads(part.to_json(orient="split", index=False))}
            assert client.post(f"{server.url}/invocations", json=body).status_code == 200


def _psi(families: dict[str, list[tuple[dict[str, str], float]]], version: str) -> dict[str, float]:
    return {labels["feature"]: v for labels, v in families["lockgate_feature_skew_psi"] if labels["version"] == version}


@pytest.mark.slow
def test_skew_through_the_gateway_and_series_lifecycle(diabetes_gateway: tuple[Server, pd.DataFrame]) -> None:
    server, features = diabetes_gateway
    state = httpx.get(f"{server.url}/endpoints/diabetes").json()
    assert state["skew"]["tracked"] and state["skew"]["predictions_tracked"]
    assert not state["skew"]["profile_cached"], "the first deploy of a dataset builds its profile"

    _post_rows(server, features.sample(n=5000, replace=True, random_state=1))
    families = _families(server)
    psi = _psi(families, "1")
    print("\ngateway PSI, 5,000 training-like rows:", {k: round(v, 4) for k, v in psi.items()})
    assert set(psi) == set(features.columns), "feature labels are exactly the signature's columns"
    assert all(v < 0.05 for v in psi.values())
    rows = [v for labels, v in families["lockgate_skew_window_rows"] if labels["version"] == "1"]
    assert rows == [5000.0]
    info = families["lockgate_endpoint_info"]
    assert len(info) == 1 and info[0][0]["weights_commit"] == state["weights_commit"]
    assert info[0][0]["dataset_commit"] == state["dataset_commit"] != ""
    assert any(labels["status"] == "200" for labels, _ in families["lockgate_requests_total"])
    assert "lockgate_request_duration_seconds_bucket" in families, "latency is a histogram"

    # Swap to v2: nothing of version 1 remains in any series.
    assert (
        httpx.post(
            f"{server.url}/admin/endpoints", json={"name": "diabetes", "model_uri": "models:/diabetes/2"}, timeout=120
        ).status_code
        == 200
    )
    assert httpx.get(f"{server.url}/endpoints/diabetes").json()["skew"]["profile_cached"], "v2 reuses it"
    shifted = features.sample(n=5000, replace=True, random_state=2)
    shifted["bmi"] = shifted["bmi"] + features["bmi"].std()
    _post_rows(server, shifted)
    families = _families(server)
    ghosts = [
        (name, labels) for name, samples in families.items() for labels, _ in samples if labels.get("version") == "1"
    ]
    assert not ghosts, f"series of the swapped-out version remain: {ghosts[:5]}"
    psi = _psi(families, "2")
    print("gateway PSI, bmi shifted by 1 sd:", {k: round(v, 4) for k, v in psi.items()})
    assert psi["bmi"] > 0.25
    assert all(v < 0.1 for k, v in psi.items() if k != "bmi")
    assert [v for labels, v in families["lockgate_skew_max_psi"] if labels["version"] == "2"] == [psi["bmi"]]


def _batch_sizes(server: Server, endpoint: str) -> tuple[float, float]:
    """(predict calls, rows) in ``lockgate_batch_size_rows`` for the endpoint's primary."""
    families = _families(server)

    def one(name: str) -> float:
        found = [v for labels, v in families[name] if labels["endpoint"] == endpoint and labels["role"] == "primary"]
        assert len(found) == 1, f"{name}: {found}"
        return found[0]

    return one("lockgate_batch_size_rows_count"), one("lockgate_batch_size_rows_sum")


def test_batch_size_counts_predict_calls_not_requests(diabetes_gateway: tuple[Server, pd.DataFrame]) -> None:
    """Concurrent 1-row requests merge into batches: the histogram counts the predict calls the
    batcher made (its own counter, on /endpoints), and its sum the rows, not one "batch" per
    request (what it counted before)."""
    server, features = diabetes_gateway
    calls_before, rows_before = _batch_sizes(server, "diabetes")
    batches_before = httpx.get(f"{server.url}/endpoints/diabetes").json()["serving"]["batching"]["batches"]
    bodies = [
        {"dataframe_split": json.loads(features.iloc[[i]].to_json(orient="split", index=False))} for i in range(400)
    ]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda body: client.post(f"{server.url}/invocations", json=body).status_code, bodies))
    assert statuses == [200] * 400
    calls, rows = _batch_sizes(server, "diabetes")
    batches = httpx.get(f"{server.url}/endpoints/diabetes").json()["serving"]["batching"]["batches"]
    print(f"400 concurrent 1-row requests: {calls - calls_before:.0f} predict calls")
    assert rows - rows_before == 400
    assert calls - calls_before == batches - batches_before


def test_the_mlflow_path_counts_one_predict_call_per_request(registry: Registry) -> None:
    registry.log_weights_model("plain", weights(3, rows=64, cols=4))
    server = start_lockgate(registry.workdir, registry.gateway_env(), "models:/plain/1", ready_path="/ready")
    try:
        serving = httpx.get(f"{server.url}/endpoints/plain").json()["serving"]
        assert serving["batching"] is None, serving  # a custom pyfunc: MLflow's own scoring path
        before = _batch_sizes(server, "plain")
        body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}}
        for _ in range(3):
            assert httpx.post(f"{server.url}/invocations", json=body).status_code == 200
        calls, rows = _batch_sizes(server, "plain")
        assert (calls - before[0], rows - before[1]) == (3, 6)
    finally:
        server.stop()


def test_endpoint_without_lineage_exports_no_skew(registry: Registry) -> None:
    registry.log_weights_model("plain", weights(3, rows=64, cols=4))
    env = registry.gateway_env()
    server = start_lockgate(registry.workdir, env, "models:/plain/1", ready_path="/ready")
    try:
        body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}
        assert httpx.post(f"{server.url}/invocations", json=body).status_code == 200
        families = _families(server)
        assert "lockgate_feature_skew_psi" not in families and "lockgate_skew_window_rows" not in families
        assert families["lockgate_endpoint_info"][0][0]["dataset_commit"] == ""
        skew = httpx.get(f"{server.url}/endpoints/plain").json()["skew"]
        assert not skew["tracked"] and "no dataset lineage" in skew["reason"]
        assert np.isclose(sum(v for _, v in families["lockgate_rows_predicted_total"]), 1.0)
    finally:
        server.stop()


@pytest.mark.slow
def test_real_prometheus_scrapes_the_shifted_psi(diabetes_gateway: tuple[Server, pd.DataFrame], tmp_path: Path) -> None:
    server, features = diabetes_gateway
    shifted = features.sample(n=3000, replace=True, random_state=3)
    shifted["bmi"] = shifted["bmi"] + features["bmi"].std()
    _post_rows(server, shifted)
    expected = _psi(_families(server), "1")["bmi"]
    prometheus = Prometheus.start(tmp_path, server.url)
    try:
        result = prometheus.query('lockgate_feature_skew_psi{endpoint="diabetes",feature="bmi"}')
        value = float(result[0]["value"][1])  # type: ignore[index]
        print(f"\nPromQL lockgate_feature_skew_psi{{feature=bmi}} = {value:.4f} (gateway /metrics: {expected:.4f})")
        assert value == pytest.approx(expected, rel=1e-9)
        assert value > 0.25
    finally:
        prometheus.stop()


def test_unseen_categories_through_the_gateway(registry: Registry) -> None:
    rng = np.random.default_rng(8)
    cities = rng.choice(["paris", "lyon", "nice"], 1500)
    frame = pd.DataFrame({"city": cities, "amount": rng.gamma(2.0, 50.0, 1500)})
    frame["label"] = (frame["amount"] > 100).astype(int)
    Store.open(str(registry.store_root), create=True).commit_files(
        "datasets", "main", [("tx/train.csv", frame.to_csv(index=False).encode())]
    )
    dataset = mlflow.data.from_pandas(frame, source="lockgate://datasets@main/tx/train.csv")
    mlflow.set_experiment(experiment_id=registry.experiment())
    with mlflow.start_run():
        mlflow.log_input(dataset, context="training")
        mlflow.pyfunc.log_model(
            name="model", pip_requirements=PIP_REQUIREMENTS, python_model=AmountModel(), registered_model_name="tx",
            input_example=frame[["city", "amount"]].head(3),
        )  # fmt: skip
    env = registry.gateway_env()
    server = start_lockgate(registry.workdir, env, "models:/tx/1", ready_path="/ready")
    try:
        rows = [["paris", 10.0], ["berlin", 20.0], ["rome", 30.0], ["lyon", 40.0]]
        body = {"dataframe_split": {"columns": ["city", "amount"], "data": rows}}
        assert httpx.post(f"{server.url}/invocations", json=body).status_code == 200
        families = _families(server)
        unseen = {labels["feature"]: v for labels, v in families["lockgate_feature_unseen_category_ratio"]}
        assert unseen == {"city": 0.5, "amount": 0.0}
    finally:
        server.stop()
