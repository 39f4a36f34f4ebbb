"""The inference log on a real S3 store (SeaweedFS), with two gateways serving one endpoint:

- every row either replica answered is in the log, and ``lockgate inference score`` over the log
  equals the accuracy of all their answers against the labels sent, whichever replica got them;
- a store that stops answering for 30 s under load fails no prediction, and the log catches up;
- a SIGKILLed replica loses at most its open window, and the store verifies clean.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from lockgate.store import Store
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, registry_at
from tests.servers import SeaweedFS, Server, start_lockgate
from tests.test_inference_log import COLUMNS, post_feedback, rows_of, send_invocations

pytestmark = pytest.mark.slow

ROOT = "s3://lockgate-inference/store"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS.start(tmp_path_factory.mktemp("weed"))
    server.client().create_bucket(Bucket="lockgate-inference")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedFS) -> Iterator[Registry]:
    """A sqlite registry whose model files are in the S3 store."""
    workdir = tmp_path_factory.mktemp("replicas")
    rng = np.random.default_rng(11)
    train = pd.DataFrame(rng.standard_normal((300, 3)), columns=COLUMNS)
    train["label"] = (train["a"] - train["c"] > 0).astype(int)
    saved = {k: os.environ.get(k) for k in (*seaweed.env(), "LOCKGATE_STORE")}
    with registry_at(workdir) as registry:
        os.environ.update({**seaweed.env(), "LOCKGATE_STORE": ROOT})
        try:
            mlflow.set_experiment(experiment_id=registry.experiment())
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    LogisticRegression().fit(train[COLUMNS], train["label"]), name="model",
                    pip_requirements=PIP_REQUIREMENTS, registered_model_name="lean",
                    input_example=train[COLUMNS].head(3), serialization_format="cloudpickle",
                )  # fmt: skip
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    yield registry


def gateway_env(registry: Registry, seaweed: SeaweedFS, replica: str) -> dict[str, str]:
    return registry.gateway_env(LOCKGATE_STORE=ROOT, LOCKGATE_CACHE_DIR=str(registry.workdir / f"cache-{replica}"),
                                **seaweed.env())  # fmt: skip


def start_replica(registry: Registry, seaweed: SeaweedFS, replica: str, window: int = 1) -> Server:
    return start_lockgate(registry.workdir, gateway_env(registry, seaweed, replica), "models:/lean/1",
                          "--inference-log-sample", "1", "--inference-log-window", str(window),
                          ready_path="/ready")  # fmt: skip


def s3_store(seaweed: SeaweedFS) -> Store:
    saved = {k: os.environ.get(k) for k in seaweed.env()}
    os.environ.update(seaweed.env())  # boto3 reads the credentials from the environment
    try:
        return Store.open(ROOT, s3_endpoint_url=seaweed.endpoint)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def logged_ids(seaweed: SeaweedFS, name: str = "lean") -> pd.DataFrame:
    store = s3_store(seaweed)
    try:
        head = store.resolve("inference", name)
    except Exception:
        return pd.DataFrame(columns=["lockgate_request_id", "lockgate_row"])
    frames = [
        pd.read_parquet(io.BytesIO(store.read_file(head, path)), columns=["lockgate_request_id",
                                                                                       "lockgate_row"])
        for path in store.list_files(head, "windows")
    ]  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["lockgate_request_id"])


def wait_logged(seaweed: SeaweedFS, expected: dict[str, int], timeout: float = 120.0) -> pd.DataFrame:
    """Wait until every request id has its rows in the log; the log as read then."""
    deadline = time.monotonic() + timeout
    while True:
        log = logged_ids(seaweed)
        counts = log["lockgate_request_id"].value_counts().to_dict() if len(log) else {}
        if all(counts.get(rid) == rows for rid, rows in expected.items()) or time.monotonic() > deadline:
            return log
        time.sleep(1.0)


def commit_lag(server: Server) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith('lockgate_inference_log_commit_lag_seconds{endpoint="lean"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no commit lag exported")


def lockgate_cli(seaweed: SeaweedFS, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **seaweed.env(), "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    command = [str(Path(sys.executable).with_name("lockgate")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd, env=env, check=False)


def test_two_replicas_log_every_row_and_the_log_scores_all_their_answers(
    registry: Registry, seaweed: SeaweedFS, tmp_path: Path
) -> None:
    replicas = [start_replica(registry, seaweed, "a"), start_replica(registry, seaweed, "b")]
    try:
        sent: dict[str, int] = {}
        answers: list[tuple[str, int, int, int]] = []  # (id, row, answer, the replica that answered)

        def send(i: int) -> tuple[str, int, list[Any]]:
            request_id = f"rep-{i}-{uuid.uuid4().hex[:8]}"
            frame = rows_of(500 + i, 1 + i % 5)
            return request_id, len(frame), send_invocations(replicas[i % 2], "lean", frame, request_id)

        # Under load: 8 clients at once, both replicas answering and committing at the same time
        # (their windows race for the branch: compare-and-swap, retried).
        with ThreadPoolExecutor(max_workers=8) as pool:
            for i, (request_id, rows, predicted) in enumerate(pool.map(send, range(400))):
                sent[request_id] = rows
                answers += [(request_id, row, int(v), i % 2) for row, v in enumerate(predicted)]
        truth = {(rid, row): (a if (i % 4) else 1 - a) for i, (rid, row, a, _w) in enumerate(answers)}
        # Half the labels go to the replica that did not answer: it commits them, unmatched there.
        to: list[list[dict[str, Any]]] = [[], []]
        for i, (rid, row, _a, which) in enumerate(answers):
            target = which if i % 2 else 1 - which
            to[target].append({"request_id": rid, "row": row, "label": truth[(rid, row)]})
        replies = [post_feedback(replicas[k], "lean", to[k]).json() for k in (0, 1)]
        assert sum(r["matched"] + r["unmatched"] for r in replies) == len(answers)
        assert sum(r["unmatched"] for r in replies) > 0
        log = wait_logged(seaweed, sent)
        counts = log["lockgate_request_id"].value_counts().to_dict()
        assert {rid: counts.get(rid) for rid in sent} == sent  # every row of both, exactly once
        expected = sum(a == truth[(rid, row)] for rid, row, a, _w in answers) / len(answers)
        deadline = time.monotonic() + 60
        while True:  # the labels' windows commit a second or two after they arrive
            done = lockgate_cli(seaweed, "inference", "score", "lean", "--store", ROOT, "--json", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            (entry,) = json.loads(done.stdout)["scores"]
            if entry["labelled"] >= len(answers) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert entry["labelled"] == len(answers)
        assert entry["scores"]["accuracy"] == pytest.approx(expected)
    finally:
        for replica in replicas:
            replica.stop()


def test_a_store_that_stops_answering_for_30s_fails_no_prediction_and_the_log_catches_up(
    registry: Registry, seaweed: SeaweedFS
) -> None:
    server = start_replica(registry, seaweed, "outage")
    try:
        sent: dict[str, int] = {}
        send_invocations(server, "lean", rows_of(1, 1), "warm-up")
        seaweed.proc.send_signal(signal.SIGSTOP)  # every store call now hangs, as on a lost network
        try:
            deadline = time.monotonic() + 30
            i = 0
            while time.monotonic() < deadline:
                request_id = f"outage-{i}-{uuid.uuid4().hex[:8]}"
                frame = rows_of(700 + i, 1 + i % 3)
                send_invocations(server, "lean", frame, request_id)  # asserts a 200
                sent[request_id] = len(frame)
                i += 1
                time.sleep(0.05)
            # The outage is seen: the oldest uncommitted row is as old as the outage.
            lag = commit_lag(server)
        finally:
            seaweed.proc.send_signal(signal.SIGCONT)
        assert lag > 20, lag
        assert len(sent) > 100
        log = wait_logged(seaweed, sent, timeout=240)
        counts = log["lockgate_request_id"].value_counts().to_dict()
        missing = {rid: rows for rid, rows in sent.items() if counts.get(rid) != rows}
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        dropped = [line for line in metrics.splitlines() if 'outcome="dropped"' in line and 'endpoint="lean"' in line]
        # Caught up: every row committed (nothing had to be dropped: the buffer held the outage).
        assert not missing, (len(missing), dropped)
    finally:
        server.stop()


def test_a_sigkilled_replica_loses_at_most_its_open_window_and_the_store_verifies(
    registry: Registry, seaweed: SeaweedFS
) -> None:
    server = start_replica(registry, seaweed, "killed", window=2)
    try:
        early: dict[str, int] = {}
        for i in range(20):
            request_id = f"early-{i}-{uuid.uuid4().hex[:8]}"
            send_invocations(server, "lean", rows_of(900 + i, 2), request_id)
            early[request_id] = 2
        log = wait_logged(seaweed, early, timeout=60)
        assert set(early) <= set(log["lockgate_request_id"])  # committed: a kill cannot take them back
        for i in range(20):  # the open window
            send_invocations(server, "lean", rows_of(950 + i, 1), f"late-{i}-{uuid.uuid4().hex[:8]}")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    after = logged_ids(seaweed)
    counts = after["lockgate_request_id"].value_counts().to_dict()
    assert {rid: counts.get(rid) for rid in early} == early
    assert not after.duplicated(["lockgate_request_id", "lockgate_row"]).any()
    report = s3_store(seaweed).verify(["inference"])
    assert report.ok, report.problems
