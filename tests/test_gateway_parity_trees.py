"""XGBoost and LightGBM on the lean path, against a live ``mlflow models serve`` on the same
registered versions, and against the native models on rows at every split threshold.

- The peer scoring suite: an XGBoost and a LightGBM classifier and regressor, each with double
  and long columns (the typed lean path): every case gives MLflow's status and exact bytes, or
  its error_code.
- Threshold rows built from each model's own ``trees_to_dataframe()`` (on, one ulp above, one ulp
  below, and the float32-rounded value of every threshold) get the native model's exact answers
  through ``/invocations`` and V2, on each path lockgate may choose: the tree engine (small
  batches), the library's own predict (large batches, and endpoints where the engine is turned
  away), for the scikit-learn wrappers and native boosters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lightgbm
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost

from tests.registry_helpers import PIP_REQUIREMENTS, registry_at
from tests.servers import Server, free_port, start_lockgate, start_mlflow_models_serves, stop_group, wait_for_servers
from tests.test_gateway_parity_typed import outcome

pytestmark = pytest.mark.slow
JSON = "application/json"
COLUMNS = ["amount", "age", "score", "visits"]


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 50.0, rows).round(3),
            "age": rng.integers(18, 90, rows).astype(np.int64),
            "score": rng.normal(0, 1, rows),
            "visits": rng.integers(0, 500, rows).astype(np.int64),
        }
    )


TRAIN = frame(600, 0)
LABEL = ((TRAIN["amount"] > 90) & (TRAIN["score"] > -0.2) | (TRAIN["age"] < 25)).astype(int)
TARGET = TRAIN["amount"] * 0.3 + TRAIN["score"] * 7 + TRAIN["visits"] * 0.01


def models() -> dict[str, tuple[str, Any]]:
    """endpoint -> (MLflow flavor, fitted model): wrappers and native boosters of both libraries."""
    # Enough trees for hundreds of distinct thresholds, few enough to keep the suite's time.
    xgb_params = {"n_estimators": 30, "max_depth": 5, "n_jobs": 1}
    lgb_params = {"n_estimators": 30, "num_leaves": 15, "verbose": -1, "n_jobs": 1}
    return {
        "xgb-clf": ("xgboost", xgboost.XGBClassifier(**xgb_params).fit(TRAIN, LABEL)),
        "xgb-reg": ("xgboost", xgboost.XGBRegressor(**xgb_params).fit(TRAIN, TARGET)),
        "lgb-clf": ("lightgbm", lightgbm.LGBMClassifier(**lgb_params).fit(TRAIN, LABEL)),
        "lgb-reg": ("lightgbm", lightgbm.LGBMRegressor(**lgb_params).fit(TRAIN, TARGET)),
        "xgb-booster": (
            "xgboost",
            xgboost.train(
                {"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgboost.DMatrix(TRAIN, LABEL), 40
            ),
        ),
        "lgb-booster": (
            "lightgbm",
            lightgbm.train(
                {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1},
                lightgbm.Dataset(TRAIN, LABEL),
                40,
            ),
        ),
    }


# The versions served by a reference `mlflow models serve` (one process each).
REFERENCED = ("xgb-clf", "xgb-reg", "lgb-clf", "lgb-reg")


@pytest.fixture(scope="module")
def tree_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("trees")
    fitted = models()
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", artifact_location="lockgate://models@main/t"))
        for name, (flavor, model) in fitted.items():
            with mlflow.start_run():
                getattr(mlflow, flavor).log_model(
                    model,
                    name="model",
                    pip_requirements=[*PIP_REQUIREMENTS, flavor],
                    registered_model_name=name,
                    input_example=TRAIN.head(3),
                )
    store_root, tracking = registry.store_root, registry.tracking_uri
    env = {"MLFLOW_TRACKING_URI": tracking, "LOCKGATE_STORE": str(store_root), "LOCKGATE_CACHE_DIR": str(workdir / "c")}
    uris = [f"models:/{name}/1" for name in REFERENCED]
    spawned = start_mlflow_models_serves(workdir, tracking, uris, {"LOCKGATE_STORE": str(store_root)}, wait=False)
    references = {uri.split("/")[1]: server for uri, server in spawned.items()}
    grpc_port = free_port()
    try:
        gateway = start_lockgate(workdir, env, *(f"models:/{name}/1" for name in fitted), "--grpc-port", str(grpc_port),
                                 ready_path="/ready")  # fmt: skip
    except BaseException:
        for reference in references.values():
            stop_group(reference.proc)
        raise
    try:
        for name in fitted:  # the same versions on the library's own predict: the engine turned off
            body = {"name": f"{name}-native", "model_uri": f"models:/{name}/1", "onnx": False}
            deployed = httpx.post(f"{gateway.url}/admin/endpoints", json=body, timeout=120)
            assert deployed.status_code == 200, deployed.text
        wait_for_servers(spawned)
        yield {"gateway": gateway, "references": references, "models": fitted, "grpc": f"127.0.0.1:{grpc_port}",
               "env": env, "workdir": workdir}  # fmt: skip
    finally:
        gateway.stop()
        for reference in references.values():
            stop_group(reference.proc)


def split(columns: list[str], data: list[list[Any]], **extra: Any) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


def frame_split(rows: pd.DataFrame) -> bytes:
    return json.dumps(
        {"dataframe_split": json.loads(rows.to_json(orient="split", index=False, double_precision=15))}
    ).encode()


def exact_split(rows: pd.DataFrame) -> bytes:
    """Every value as Python's repr, which round-trips (pandas' JSON keeps 15 digits, which would
    move a row that sits one ulp from a threshold)."""
    data = [
        [int(v) if rows[c].dtype.kind == "i" else float(v) for c, v in zip(rows.columns, row, strict=True)]
        for row in rows.itertuples(index=False)
    ]
    return json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": data}}).encode()


def records(rows: pd.DataFrame, key: str = "dataframe_records") -> bytes:
    return json.dumps({key: json.loads(rows.to_json(orient="records", double_precision=15))}).encode()


def columnar(rows: pd.DataFrame) -> bytes:
    return json.dumps({"inputs": {c: rows[c].tolist() for c in rows.columns}}).encode()


PROBE = frame(300, 7)
ROW = json.loads(PROBE.head(1).to_json(orient="split", index=False, double_precision=15))["data"][0]


def with_value(index: int, value: Any) -> list[Any]:
    changed = list(ROW)
    changed[index] = value
    return changed


# (case, body, content type, whether the lean path takes it; None: not asserted)
CASES: list[tuple[str, bytes, str, bool | None]] = [
    ("one row", frame_split(PROBE.head(1)), JSON, True),
    ("split", frame_split(PROBE.head(5)), JSON, True),
    ("many rows", frame_split(PROBE), JSON, True),
    ("records", records(PROBE.head(4)), JSON, True),
    ("instances", records(PROBE.head(4), "instances"), JSON, True),
    ("inputs", columnar(PROBE.head(3)), JSON, True),
    ("reordered", frame_split(PROBE[list(reversed(COLUMNS))].head(3)), JSON, True),
    ("integral amount", split(COLUMNS, [with_value(0, 120)]), JSON, True),
    ("negative zero", split(COLUMNS, [with_value(2, -0.0)]), JSON, True),
    ("huge double", split(COLUMNS, [with_value(0, 1e300)]), JSON, None),
    ("double past float32", split(COLUMNS, [with_value(2, -3.5e38)]), JSON, None),
    ("float for a long", split(COLUMNS, [with_value(1, 30.5)]), JSON, False),
    ("long past int64", split(COLUMNS, [with_value(3, 2**63)]), JSON, False),
    ("null number", split(COLUMNS, [with_value(0, None)]), JSON, False),
    ("boolean for a double", split(COLUMNS, [with_value(0, True)]), JSON, False),
    ("string for a long", split(COLUMNS, [with_value(1, "30")]), JSON, False),
    ("missing column", split(COLUMNS[:3], [ROW[:3]]), JSON, False),
    ("extra column", split([*COLUMNS, "note"], [[*ROW, "x"]]), JSON, False),
    ("params", split(COLUMNS, [ROW], params={"k": 1}), JSON, False),
    ("csv", PROBE.head(3).to_csv(index=False).encode(), "text/csv", False),
    ("empty frame", split(COLUMNS, []), JSON, False),
    ("invalid JSON", b'{"dataframe_split": {', JSON, False),
]


def serving(url: str, name: str) -> dict[str, Any]:
    endpoint = httpx.get(f"{url}/endpoints/{name}").json()
    assert endpoint["serving"] is not None, endpoint
    return dict(endpoint["serving"])


def lean_requests(url: str, name: str) -> int:
    batching = serving(url, name)["batching"]
    return 0 if batching is None else int(batching["requests"])


def test_tree_models_take_the_exact_lean_path(tree_servers: dict[str, Any]) -> None:
    url = tree_servers["gateway"].url
    for name in tree_servers["models"]:
        path = serving(url, name)
        assert path["name"] == "trees" and path["lean_parsing"] is True, (name, path)
        assert path["typed_columns"] == {"amount": "double", "age": "long", "score": "double", "visits": "long"}
        check = path["check"]
        assert check["contract"] == "exact" and check["engine"] == "onnxruntime-trees", (name, check)
        # Every split threshold was checked, and the rows the check ran on include them.
        assert check["threshold_rows"] > 50 and check["rows_checked"] > check["threshold_rows"], (name, check)
        assert check["precision"] == ("float32" if name.startswith("xgb") else "float64"), (name, check)
        native = serving(url, f"{name}-native")
        library = tree_servers["models"][name][0]
        assert native["name"] == library and "turned off" in native["reason"], native
        assert native["check"]["engine"] == "native" and native["lean_parsing"] is True, native
    metrics = httpx.get(f"{url}/metrics").text
    assert 'serving_path="trees"' in metrics and 'serving_path="lightgbm"' in metrics


RUNS = [(*case, model) for case in CASES for model in REFERENCED]


@pytest.mark.parametrize(("case", "body", "content_type", "lean", "model"), RUNS, ids=[f"{r[0]}-{r[4]}" for r in RUNS])
def test_same_bytes_as_mlflow_models_serve(  # noqa: PLR0917 - one parameter per case field
    tree_servers: dict[str, Any], case: str, body: bytes, content_type: str, lean: bool | None, model: str
) -> None:
    gateway: Server = tree_servers["gateway"]
    reference: Server = tree_servers["references"][model]
    before = lean_requests(gateway.url, model)
    headers = {"Content-Type": content_type}
    ours = httpx.post(f"{gateway.url}/endpoints/{model}/invocations", content=body, headers=headers, timeout=60)
    theirs = httpx.post(f"{reference.url}/invocations", content=body, headers=headers, timeout=60)
    assert outcome(ours) == outcome(theirs), f"{case}: lockgate {ours.text[:300]!r} vs mlflow {theirs.text[:300]!r}"
    if lean is not None:
        taken = lean_requests(gateway.url, model) - before
        assert taken == (1 if lean else 0), f"{case}: the lean path took {taken} requests"


def threshold_frame(model: Any, base: pd.Series) -> pd.DataFrame:
    """Rows on, one ulp above and below, and at the float32 value of every split threshold, read
    from the library's own ``trees_to_dataframe()`` (not from lockgate's own tree table)."""
    booster = model.get_booster() if hasattr(model, "get_booster") else getattr(model, "booster_", model)
    trees = booster.trees_to_dataframe()
    if "Split" in trees:  # XGBoost: Feature, Split (leaves: "Leaf", NaN)
        splits = trees.loc[trees["Feature"] != "Leaf", ["Feature", "Split"]].to_numpy()
    else:  # LightGBM: split_feature, threshold (leaves: None)
        splits = trees.loc[trees["split_feature"].notna(), ["split_feature", "threshold"]].to_numpy()
    rows = []
    for feature, threshold in splits:
        t = float(threshold)
        values = {t, float(np.nextafter(t, np.inf)), float(np.nextafter(t, -np.inf)), float(np.float32(t))}
        if base[feature].dtype.kind == "i" if hasattr(base[feature], "dtype") else isinstance(base[feature], int):
            values = {float(np.floor(t)), float(np.floor(t)) + 1}
        for value in values:
            row = base.copy()
            row[feature] = value
            rows.append(row)
    out = pd.DataFrame(rows).reset_index(drop=True)
    return out.astype({"age": np.int64, "visits": np.int64})


def native_answer(model: Any, rows: pd.DataFrame) -> list[Any]:
    """What the library itself answers (MLflow's pyfunc calls these very methods)."""
    if isinstance(model, xgboost.Booster):
        return np.asarray(model.predict(xgboost.DMatrix(rows))).tolist()
    return np.asarray(model.predict(rows)).tolist()


@pytest.mark.parametrize("variant", ["", "-native"])
@pytest.mark.parametrize("model_name", ["xgb-clf", "xgb-reg", "lgb-clf", "lgb-reg", "xgb-booster", "lgb-booster"])
def test_threshold_rows_get_the_native_answers_on_every_path(
    tree_servers: dict[str, Any], model_name: str, variant: str
) -> None:
    gateway: Server = tree_servers["gateway"]
    model = tree_servers["models"][model_name][1]
    name = model_name + variant
    rows = threshold_frame(model, TRAIN.iloc[3])
    assert len(rows) > 200, "the models use enough thresholds for this test to mean something"
    expected = native_answer(model, rows)
    check = serving(gateway.url, name)["check"]
    # One row at a time (the tree engine) and all at once (the large-batch engine, if another).
    single = [
        httpx.post(f"{gateway.url}/endpoints/{name}/invocations", content=exact_split(rows.iloc[[i]]),
                   headers={"Content-Type": JSON}).json()["predictions"][0]
        for i in range(0, len(rows), max(1, len(rows) // 25))
    ]  # fmt: skip
    assert single == expected[:: max(1, len(rows) // 25)], f"{name}: single rows differ ({check['engine']})"
    whole = httpx.post(f"{gateway.url}/endpoints/{name}/invocations", content=exact_split(rows),
                       headers={"Content-Type": JSON}, timeout=60)  # fmt: skip
    assert whole.status_code == 200, whole.text
    assert whole.json()["predictions"] == expected, f"{name}: the batch differs ({check.get('large_batches')})"
    # V2 REST, one input per column.
    v2 = {"inputs": [{"name": c, "datatype": "INT64" if rows[c].dtype.kind == "i" else "FP64",
                      "shape": [len(rows)], "data": rows[c].tolist()} for c in COLUMNS]}  # fmt: skip
    answer = httpx.post(f"{gateway.url}/v2/models/{name}/infer", json=v2, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == expected, f"{name}: V2 differs"
    # V2 over gRPC (tritonclient), the same columns as raw tensors.
    import tritonclient.grpc as triton_grpc

    inputs = []
    for column in COLUMNS:
        values = rows[column].to_numpy()
        tensor = triton_grpc.InferInput(column, [len(rows)], "INT64" if values.dtype.kind == "i" else "FP64")
        tensor.set_data_from_numpy(values.astype(np.int64 if values.dtype.kind == "i" else np.float64))
        inputs.append(tensor)
    with triton_grpc.InferenceServerClient(tree_servers["grpc"]) as client:
        result = client.infer(name, inputs).as_numpy("predict")
    assert result is not None and result.tolist() == expected, f"{name}: V2 gRPC differs"


def test_a_restart_serves_the_recorded_engine_before_the_model_loads(tree_servers: dict[str, Any]) -> None:
    """The same cache, a new gateway: the engines' records are re-checked against the MLflow answers
    the first deploy kept, and serve before the models load; answers are the same bytes; a tampered
    graph is refused (the model loads and the engine is checked as on a first deploy)."""
    first: Server = tree_servers["gateway"]
    names = ("xgb-clf", "lgb-reg")
    body = exact_split(PROBE.head(7))
    before = {n: httpx.post(f"{first.url}/endpoints/{n}/invocations", content=body,
                            headers={"Content-Type": JSON}).content for n in names}  # fmt: skip
    env = dict(tree_servers["env"])
    again = start_lockgate(tree_servers["workdir"], env, *(f"models:/{n}/1" for n in names), ready_path="/ready")
    try:
        for name in names:
            endpoint = httpx.get(f"{again.url}/endpoints/{name}").json()
            assert endpoint["serving_path"] == "trees", endpoint["serving"]
            assert endpoint["serving"]["check"]["from_record"] is True, endpoint["serving"]["check"]
            assert endpoint["load_report"]["native_deferred"] is True, endpoint["load_report"]
            after = httpx.post(
                f"{again.url}/endpoints/{name}/invocations", content=body, headers={"Content-Type": JSON}
            )
            assert after.content == before[name]
    finally:
        again.stop()
    # A graph that is not the checked one: the record is refused, the model loads before ready.
    cache = Path(env["LOCKGATE_CACHE_DIR"])
    for graph in cache.glob("versions/*/.lockgate-derived/trees/engine.onnx"):
        graph.write_bytes(graph.read_bytes() + b"\0")
    third = start_lockgate(tree_servers["workdir"], env, "models:/xgb-clf/1", ready_path="/ready")
    try:
        endpoint = httpx.get(f"{third.url}/endpoints/xgb-clf").json()
        assert endpoint["load_report"]["native_deferred"] is False, endpoint["load_report"]
        assert endpoint["serving_path"] == "trees" and not endpoint["serving"]["check"].get("from_record")
        after = httpx.post(f"{third.url}/endpoints/xgb-clf/invocations", content=body, headers={"Content-Type": JSON})
        assert after.content == before["xgb-clf"]
    finally:
        third.stop()
