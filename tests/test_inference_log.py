"""The inference log against a real ``lockgate serve`` and a real store: every sampled row sent
through MLflow's ``/invocations``, V2 REST and V2 gRPC is committed once, as Parquet, on branch
NAME of repository ``inference``, with the features sent and the prediction answered, and reads
back with ``pandas.read_parquet("lockgate://inference@NAME/...")``. A sample of 0.1 logs about
a tenth of the rows. A SIGTERM right after a burst commits every answered row before the exit."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, registry_at, weights
from tests.servers import Server, free_port, reset_mlflow_uris, start_lockgate

pytestmark = pytest.mark.slow

COLUMNS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A lean-path model (sklearn, batched) and a pyfunc model, registered once for the module."""
    workdir = tmp_path_factory.mktemp("inference-log")
    rng = np.random.default_rng(5)
    train = pd.DataFrame(rng.standard_normal((300, 3)), columns=COLUMNS)
    train["label"] = (train["a"] + train["b"] > 0).astype(int)
    evaluation = pd.DataFrame(rng.standard_normal((200, 3)), columns=COLUMNS)
    evaluation["label"] = (evaluation["a"] + evaluation["b"] + 0.7 * evaluation["c"] > 0).astype(int)
    with registry_at(workdir) as registry:
        store = Store.open(str(registry.store_root), create=True)
        files = [("train.csv", train.to_csv(index=False).encode()),
                 ("evaluation.csv", evaluation.to_csv(index=False).encode())]  # fmt: skip
        store.commit_files("datasets", "main", files)
        training = mlflow.data.from_pandas(train, source="lockgate://datasets@main/train.csv")
        registry.log_weights_model("pyfunc", weights(2, rows=8, cols=2), dataset=training)
        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.log_input(training, context="training")
            mlflow.log_input(mlflow.data.from_pandas(evaluation, source="lockgate://datasets@main/evaluation.csv"),
                             context="evaluation")  # fmt: skip
            mlflow.sklearn.log_model(
                LogisticRegression().fit(train[COLUMNS], train["label"]), name="model",
                pip_requirements=PIP_REQUIREMENTS, registered_model_name="lean", input_example=train[COLUMNS].head(3),
                serialization_format="cloudpickle",
            )  # fmt: skip
    yield registry


@pytest.fixture(scope="module")
def gateway(models: Registry) -> Iterator[Server]:
    grpc_port = free_port()
    server = start_lockgate(models.workdir, models.gateway_env(), "models:/lean/1", "models:/pyfunc/1",
                            "--grpc-port", str(grpc_port), "--inference-log-sample", "1",
                            "--inference-log-window", "1", ready_path="/ready")  # fmt: skip
    server.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def read_log(store_root: Path, name: str) -> pd.DataFrame:
    """Every committed window of endpoint ``name``, through lockgate's own fsspec filesystem."""
    store = Store.open(str(store_root))
    head = store.resolve("inference", name)
    paths = sorted(p for p in store.list_files(head, "windows") if p.endswith(".parquet"))
    options = {"store": str(store_root)}
    frames = [pd.read_parquet(f"lockgate://inference@{head}/{path}", storage_options=options) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def wait_for_rows(store_root: Path, name: str, request_ids: set[str], timeout: float = 60.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    log = pd.DataFrame()
    while time.monotonic() < deadline:
        try:
            log = read_log(store_root, name)
        except Exception:  # the branch does not exist before its first commit
            log = pd.DataFrame()
        if not log.empty and request_ids <= set(log["lockgate_request_id"]):
            return log
        time.sleep(0.5)
    raise AssertionError(f"not every request reached the log of {name} in {timeout}s: {len(log)} rows")


def rows_of(seed: int, count: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(np.round(rng.standard_normal((count, 3)), 6), columns=COLUMNS)


def send_invocations(server: Server, name: str, frame: pd.DataFrame, request_id: str) -> list[Any]:
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    answer = httpx.post(f"{server.url}/endpoints/{name}/invocations", json=body,
                        headers={"X-Request-Id": request_id}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-lockgate-request-id"] == request_id
    return list(np.asarray(answer.json()["predictions"]).ravel())


def send_v2_rest(server: Server, name: str, frame: pd.DataFrame, request_id: str) -> list[Any]:
    inputs = [{"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()} for c in COLUMNS]
    answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json={"id": request_id, "inputs": inputs}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == request_id
    (output,) = answer.json()["outputs"]
    return list(np.asarray(output["data"]).ravel())


def send_v2_grpc(server: Server, name: str, frame: pd.DataFrame, request_id: str) -> list[Any]:
    message = pb.ModelInferRequest(model_name=name, id=request_id)
    for column in COLUMNS:
        message.inputs.add(name=column, datatype="FP64", shape=[len(frame)]).contents.fp64_contents.extend(
            frame[column].tolist()
        )
    with grpc.insecure_channel(server.grpc_address) as channel:  # type: ignore[attr-defined]
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=60)
    assert response.id == request_id
    (output,) = response.outputs
    dtype = {"INT64": "<i8", "FP64": "<f8"}[output.datatype]
    return list(np.frombuffer(response.raw_output_contents[0], dtype))


SENDERS = {"mlflow": send_invocations, "v2-rest": send_v2_rest, "v2-grpc": send_v2_grpc}


@pytest.mark.parametrize("name", ["lean", "pyfunc"])
def test_every_row_of_every_protocol_is_logged_once_with_its_features_and_answer(
    gateway: Server, models: Registry, name: str
) -> None:
    sent: dict[str, tuple[str, pd.DataFrame, list[Any]]] = {}
    for seed, (protocol, send) in enumerate(SENDERS.items()):
        for count in (1, 7):
            request_id = f"{protocol}-{count}-{uuid.uuid4().hex[:8]}"
            frame = rows_of(seed * 10 + count, count)
            sent[request_id] = (protocol, frame, send(gateway, name, frame, request_id))
    log = wait_for_rows(models.store_root, name, set(sent))
    log = log[log["lockgate_request_id"].isin(sent)]
    assert len(log) == sum(len(frame) for _protocol, frame, _answer in sent.values())  # each row exactly once
    assert not log.duplicated(["lockgate_request_id", "lockgate_row"]).any()
    state = httpx.get(f"{gateway.url}/endpoints/{name}", timeout=30).json()
    for request_id, (protocol, frame, answer) in sent.items():
        rows = log[log["lockgate_request_id"] == request_id].sort_values("lockgate_row")
        assert rows["lockgate_row"].tolist() == list(range(len(frame)))
        assert set(rows["lockgate_protocol"]) == {protocol}
        assert set(rows["lockgate_role"]) == {"primary"}
        assert set(rows["lockgate_model_version"]) == {state["version"]}
        assert set(rows["lockgate_weights_commit"]) == {state["weights_commit"]}
        # The features under their signature names, as sent; the prediction as answered.
        pd.testing.assert_frame_equal(rows[COLUMNS].reset_index(drop=True), frame, check_dtype=False)
        np.testing.assert_array_equal(np.asarray(rows["lockgate_prediction"].tolist()).ravel(), answer)
    assert str(log["lockgate_time"].dt.tz) == "UTC"


def test_a_sample_of_a_tenth_logs_a_tenth_of_the_rows(gateway: Server, models: Registry) -> None:
    answer = httpx.post(f"{gateway.url}/admin/endpoints", timeout=120, json={
        "name": "sampled", "model_uri": "models:/lean/1", "inference_log_sample": 0.1,
        "inference_log_window": 1})  # fmt: skip
    assert answer.status_code == 200, answer.text
    ids = []
    for batch in range(10):
        request_id = f"sample-{batch}-{uuid.uuid4().hex[:8]}"
        send_invocations(gateway, "sampled", rows_of(100 + batch, 1000), request_id)
        ids.append(request_id)
    for _ in range(200):  # 1 row at a time: each is sampled on its own
        send_invocations(gateway, "sampled", rows_of(7, 1), f"one-{uuid.uuid4().hex[:12]}")
    time.sleep(3)  # two windows of one second, and the grace
    log = read_log(models.store_root, "sampled")
    big = log[log["lockgate_request_id"].isin(ids)]
    share = len(big) / 10_000
    assert 0.085 <= share <= 0.115, share
    moved = metric_values(gateway, "lockgate_inference_log_rows_total", endpoint="sampled")
    assert moved.get("logged", 0) + moved.get("sampled_out", 0) == 10_200, moved
    assert moved.get("dropped", 0) == 0, moved
    assert moved["logged"] == len(log)


def metric_values(server: Server, metric: str, **labels: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                found[sample.labels["outcome"]] = sample.value
    return found


def test_sigterm_after_a_burst_commits_every_answered_row(models: Registry) -> None:
    # A long window: only the graceful stop can commit these rows.
    server = start_lockgate(models.workdir, models.gateway_env(), "models:/lean/1", "--name", "burst",
                            "--inference-log-sample", "1", "--inference-log-window", "3600",
                            ready_path="/ready")  # fmt: skip
    try:
        ids = set()
        for i in range(60):
            request_id = f"burst-{i}-{uuid.uuid4().hex[:8]}"
            send_invocations(server, "burst", rows_of(i, 1 + i % 3), request_id)
            ids.add(request_id)
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done: the exit status is -15.
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    log = read_log(models.store_root, "burst")
    assert ids <= set(log["lockgate_request_id"])
    assert len(log[log["lockgate_request_id"].isin(ids)]) == sum(1 + i % 3 for i in range(60))


def post_feedback(server: Server, name: str, labels: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{server.url}/endpoints/{name}/feedback", json={"labels": labels}, timeout=60)


def live_score(server: Server, name: str, metric: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "lockgate_live_score" and labels["endpoint"] == name and labels["metric"] == metric:
                found[labels["role"]] = sample.value
    return found


def test_feedback_scores_the_answers_given_and_counts_unknown_ids_as_unmatched(gateway: Server) -> None:
    answers: list[tuple[str, int, int]] = []  # (request id, row, the class answered)
    for i in range(40):
        request_id = f"fb-{i}-{uuid.uuid4().hex[:8]}"
        frame = rows_of(1000 + i, 1 + i % 4)
        predicted = send_invocations(gateway, "lean", frame, request_id)
        answers += [(request_id, row, int(value)) for row, value in enumerate(predicted)]
    truth = [1 - answer if row == 0 and i % 3 == 0 else answer for i, (_id, row, answer) in enumerate(answers)]
    labels = [
        {"request_id": rid, "row": row, "label": label} for (rid, row, _), label in zip(answers, truth, strict=True)
    ]
    reply = post_feedback(gateway, "lean", [*labels, {"request_id": "never-answered", "row": 0, "label": 1}])
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"matched": len(answers), "unmatched": 1}
    # The live accuracy is the accuracy of the answers given, against the labels sent.
    expected = sum(a == t for (_, _, a), t in zip(answers, truth, strict=True)) / len(answers)
    assert live_score(gateway, "lean", "accuracy")["primary"] == pytest.approx(expected)
    assert expected < 1.0
    # A phase of wrong labels lowers it, by exactly what the window now holds.
    wrong = []
    for i in range(20):
        request_id = f"fb-wrong-{i}-{uuid.uuid4().hex[:8]}"
        (value,) = send_invocations(gateway, "lean", rows_of(2000 + i, 1), request_id)
        wrong.append({"request_id": request_id, "row": 0, "label": 1 - int(value)})
    assert post_feedback(gateway, "lean", wrong).json() == {"matched": 20, "unmatched": 0}
    lowered = sum(a == t for (_, _, a), t in zip(answers, truth, strict=True)) / (len(answers) + 20)
    assert live_score(gateway, "lean", "accuracy")["primary"] == pytest.approx(lowered)
    assert lowered < expected


def test_feedback_on_a_regressor_gives_rmse_mae_and_r2(gateway: Server) -> None:
    sent: list[tuple[str, float]] = []
    for i in range(12):
        request_id = f"reg-{i}-{uuid.uuid4().hex[:8]}"
        (value,) = send_invocations(gateway, "pyfunc", rows_of(3000 + i, 1), request_id)
        sent.append((request_id, float(value)))
    truth = [answer + (0.5 if i % 2 else -0.25) for i, (_, answer) in enumerate(sent)]
    labels = [{"request_id": rid, "row": 0, "label": label} for (rid, _), label in zip(sent, truth, strict=True)]
    assert post_feedback(gateway, "pyfunc", labels).json() == {"matched": 12, "unmatched": 0}
    errors = np.array([a - t for (_, a), t in zip(sent, truth, strict=True)])
    assert live_score(gateway, "pyfunc", "rmse")["primary"] == pytest.approx(float(np.sqrt(np.mean(errors**2))))
    assert live_score(gateway, "pyfunc", "mae")["primary"] == pytest.approx(float(np.mean(np.abs(errors))))
    assert "primary" in live_score(gateway, "pyfunc", "r2")


def _labels(*labels: dict[str, Any], times: int = 1) -> bytes:
    return json.dumps({"labels": list(labels) * times}).encode()


ONE = {"request_id": "a", "row": 0, "label": 1}
# Bodies are made when a case runs, not when the module is collected (one is 50 MB).
HOSTILE: dict[str, tuple[Any, int, str]] = {
    "malformed JSON": (lambda: b"{not json", 400, "labels"),
    "a 1 MB id": (lambda: _labels({**ONE, "request_id": "x" * 1_000_000}), 400, "request_id"),
    "a NUL in the id": (lambda: _labels({**ONE, "request_id": "a\u0000b"}), 400, "request_id"),
    "a newline in the id": (lambda: _labels({**ONE, "request_id": "a\nb"}), 400, "request_id"),
    "a negative row": (lambda: _labels({**ONE, "row": -1}), 400, "row"),
    "a row as text": (lambda: _labels({**ONE, "row": "0"}), 400, "row"),
    "a list label": (lambda: _labels({**ONE, "label": [1, 2]}), 400, "label"),
    "a null label": (lambda: _labels({**ONE, "label": None}), 400, "label"),
    "an object label": (lambda: _labels({**ONE, "label": {"x": 1}}), 400, "label"),
    "no label": (lambda: _labels({"request_id": "a", "row": 0}), 400, "label"),
    "100,001 labels": (lambda: _labels(ONE, times=100_001), 400, "100,000"),
    "10^6 labels": (lambda: _labels(ONE, times=1_000_000), 413, "limit"),
    "labels not a list": (lambda: json.dumps({"labels": ONE}).encode(), 400, "labels"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_feedback_gets_a_4xx_naming_what_is_wrong(gateway: Server, case: str) -> None:
    make, status, names = HOSTILE[case]
    reply = httpx.post(f"{gateway.url}/endpoints/lean/feedback", content=make(),
                       headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert reply.status_code == status, reply.text[:500]
    assert names in reply.json()["message"], reply.text[:500]
    assert len(reply.content) < 4096  # the hostile value is not echoed back


def test_feedback_for_an_unknown_endpoint_is_a_404(gateway: Server) -> None:
    reply = post_feedback(gateway, "nope", [{"request_id": "a", "row": 0, "label": 1}])
    assert reply.status_code == 404 and "nope" in reply.json()["message"]


def lockgate_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``lockgate`` command, run from a directory that is not the checkout."""
    command = [str(Path(sys.executable).with_name("lockgate")), *args]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


def test_the_cli_lists_the_windows_and_scores_the_log_itself(gateway: Server, models: Registry, tmp_path: Path) -> None:
    body = {"name": "scored", "model_uri": "models:/lean/1", "inference_log_sample": 1, "inference_log_window": 1}
    answer = httpx.post(f"{gateway.url}/admin/endpoints", timeout=120, json=body)
    assert answer.status_code == 200, answer.text
    labels, right = [], 0
    for i in range(30):
        request_id = f"cli-{i}-{uuid.uuid4().hex[:8]}"
        (value,) = send_invocations(gateway, "scored", rows_of(4000 + i, 1), request_id)
        label = int(value) if i % 3 else 1 - int(value)
        right += int(label == int(value))
        labels.append({"request_id": request_id, "row": 0, "label": label})
    assert post_feedback(gateway, "scored", labels).json() == {"matched": 30, "unmatched": 0}
    root = str(models.store_root)
    deadline = time.monotonic() + 60
    while True:  # the labels' window commits a second or two after they arrive
        done = lockgate_cli("inference", "score", "scored", "--store", root, "--json", cwd=tmp_path)
        if done.returncode == 1 and "no inference log" in done.stderr and time.monotonic() < deadline:
            time.sleep(0.5)  # the first window is not committed yet
            continue
        assert done.returncode == 0, done.stderr
        (entry,) = json.loads(done.stdout)["scores"]
        if entry["labelled"] == 30 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert entry["answers"] == 30 and entry["labelled"] == 30 and entry["role"] == "primary"
    assert entry["scores"]["accuracy"] == pytest.approx(right / 30)
    listed = lockgate_cli("inference", "ls", "scored", "--store", root, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    files = json.loads(listed.stdout)["files"]
    assert sum(f["rows"] for f in files) == 30
    state = httpx.get(f"{gateway.url}/endpoints/scored", timeout=30).json()
    assert {f["weights_commit"] for f in files} == {state["weights_commit"]}
    frame = pd.read_parquet(files[0]["uri"], storage_options={"store": root})
    assert set(COLUMNS) <= set(frame.columns) and len(frame) == files[0]["rows"]
    missing = lockgate_cli("inference", "ls", "nope", "--store", root, cwd=tmp_path)
    assert missing.returncode == 1 and "no inference log" in missing.stderr
    # The lineage names, per version, the log commits of the data it served.
    lineage = httpx.get(f"{gateway.url}/endpoints/scored/lineage", timeout=30).json()
    served = lineage["served_data"][state["version"]]
    assert served["rows"] >= 30 and set(served["commits"]) >= {f["commit"] for f in files}
    shown = lockgate_cli("lineage", "scored", "--gateway", gateway.url, cwd=tmp_path)
    assert shown.returncode == 0 and "served data" in shown.stdout, shown.stderr


@contextlib.contextmanager
def registry_uris(models: Registry) -> Iterator[None]:
    """MLflow's URIs and the store pointed at this module's registry, for loading its models here."""
    saved = os.environ.get("LOCKGATE_STORE")
    os.environ["LOCKGATE_STORE"] = str(models.store_root)
    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    try:
        yield
    finally:
        reset_mlflow_uris()
        if saved is None:
            os.environ.pop("LOCKGATE_STORE", None)
        else:
            os.environ["LOCKGATE_STORE"] = saved


def baseline_of(server: Server, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:  # worked out in the background once the gateway is ready
        found = httpx.get(f"{server.url}/endpoints/{name}", timeout=30).json()["baseline_score"]
        if found is not None or time.monotonic() > deadline:
            assert found is not None, "no baseline score after 60 s"
            return dict(found)
        time.sleep(0.5)


def baseline_metrics(server: Server, name: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "lockgate_baseline_score" and sample.labels["endpoint"] == name:
                found[(sample.labels["metric"], sample.labels["dataset"])] = sample.value
    return found


def test_the_baseline_is_the_models_own_score_on_its_evaluation_dataset(gateway: Server, models: Registry) -> None:
    found = baseline_of(gateway, "lean")
    assert found["dataset"] == "evaluation" and found["target"] == "label" and found["rows"] == 200, found
    store = Store.open(str(models.store_root))
    evaluation = pd.read_csv(io.BytesIO(store.read_file(store.resolve("datasets", "main"), "evaluation.csv")))
    with registry_uris(models):
        model = mlflow.sklearn.load_model("models:/lean/1")
    expected = float((model.predict(evaluation[COLUMNS]) == evaluation["label"]).mean())
    assert found["scores"] == {"accuracy": pytest.approx(expected)}
    assert baseline_metrics(gateway, "lean") == {("accuracy", "evaluation"): pytest.approx(expected)}


def test_without_an_evaluation_dataset_the_baseline_is_on_the_training_data(gateway: Server, models: Registry) -> None:
    found = baseline_of(gateway, "pyfunc")
    assert found["dataset"] == "training" and found["target"] == "label", found
    store = Store.open(str(models.store_root))
    train = pd.read_csv(io.BytesIO(store.read_file(store.resolve("datasets", "main"), "train.csv")))
    with registry_uris(models):
        predicted = np.asarray(mlflow.pyfunc.load_model("models:/pyfunc/1").predict(train[COLUMNS])).ravel()
    errors = predicted - train["label"].to_numpy()
    assert found["scores"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(errors**2))))
    assert found["scores"]["mae"] == pytest.approx(float(np.mean(np.abs(errors))))
    assert baseline_metrics(gateway, "pyfunc")[("rmse", "training")] == pytest.approx(found["scores"]["rmse"])
