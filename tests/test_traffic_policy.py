"""Canary, shadow and promote through a real ``lockgate serve`` (uvicorn), a real sqlite registry
and store, the real CLI and a real Prometheus.

One gateway serves four endpoints, each with its own registered model, so a test that moves
aliases or promotes never changes what another test measures:

- ``fraud``:   primary models:/fraud@champion (v1), canary models:/fraud@challenger (v2), 10 %
  (from the config file);
- ``labels``:  primary models:/labels/1, shadow models:/labels/2, which disagrees on 25 % of rows;
- ``raising``: primary models:/labels/1, shadow models:/labels/3, which raises on every request;
- ``moving``:  deployed by a test, its aliases moved under load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.load_clients import Answer, hammer, in_background
from tests.pyfunc_models import AlwaysRaises, FailsToLoad, ParityLabel
from tests.registry_helpers import PIP_REQUIREMENTS, Registry, registry_at
from tests.servers import Prometheus, Server, free_port, start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
COLUMNS = ["x0", "x1", "x2", "x3"]
ROW = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[0.1, -0.2, 0.3, 0.4]]}}).encode()
# a = 0, 1, 2, 3, 0, ...: the flipping shadow disagrees on exactly one row in four.
PARITY_ROWS = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[i % 4] for i in range(8)]}}).encode()


@dataclass
class PolicyGateway:
    server: Server
    registry: Registry
    grpc_address: str

    def endpoint(self, name: str) -> dict[str, object]:
        return dict(httpx.get(f"{self.server.url}/endpoints/{name}", timeout=30).json())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOCKGATE, *args, "--gateway", self.server.url], capture_output=True, text=True, timeout=300, check=False
        )


def _log_classifier(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((200, 4)), columns=COLUMNS)
    labels = (frame["x0"] + rng.standard_normal(200) > 0).astype(int)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LogisticRegression().fit(frame, labels),
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
            input_example=frame.head(3),
        )


def _log_pyfunc(name: str, model: mlflow.pyfunc.PythonModel, example: pd.DataFrame | None) -> None:
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            pip_requirements=PIP_REQUIREMENTS,
            python_model=model,
            registered_model_name=name,
            input_example=example,
        )


@pytest.fixture(scope="module")
def policy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyGateway]:
    workdir = tmp_path_factory.mktemp("policy")
    with registry_at(workdir) as registry:
        mlflow.set_experiment(experiment_id=registry.experiment())
        for seed in (1, 2, 3):
            _log_classifier("fraud", seed)
        example = pd.DataFrame({"a": [0, 1, 2]})
        _log_pyfunc("labels", ParityLabel(), example)
        _log_pyfunc("labels", ParityLabel(flip=True), example)
        _log_pyfunc("labels", AlwaysRaises(), None)
        _log_pyfunc("unloadable", FailsToLoad(), None)
        client = registry.client
        # "moving" and "lineage" are fraud again (the same stored files): a test moves the
        # aliases of one and promotes the other, and nothing else changes.
        for copy in ("moving", "lineage"):
            client.create_registered_model(copy)
            for version in ("1", "2", "3"):
                source = client.get_model_version("fraud", version)
                client.create_model_version(copy, source.source, run_id=source.run_id)
        for model in ("fraud", "moving"):
            client.set_registered_model_alias(model, "champion", "1")
            client.set_registered_model_alias(model, "challenger", "2")
    config = workdir / "endpoints.yaml"
    config.write_text(
        "endpoints:\n"
        "  - name: fraud\n    model_uri: models:/fraud@champion\n"
        "    canary: {model_uri: models:/fraud@challenger, percent: 10}\n"
        "  - name: labels\n    model_uri: models:/labels/1\n    shadow: {model_uri: models:/labels/2}\n"
    )
    env = registry.gateway_env(LOCKGATE_FOLLOW_INTERVAL="0.5", LOCKGATE_ONNX="false")
    grpc_port = free_port()
    server = start_lockgate(workdir, env, "--config", str(config), "--grpc-port", str(grpc_port), ready_path="/ready")
    try:
        yield PolicyGateway(server, registry, f"127.0.0.1:{grpc_port}")
    finally:
        server.stop()


def _share(answers: list[Answer], role: str) -> float:
    return 100.0 * sum(a.role == role for a in answers) / len(answers)


def test_the_config_file_sets_the_policy_and_every_answer_names_its_role(policy_gateway: PolicyGateway) -> None:
    policy = policy_gateway.endpoint("fraud")["policy"]
    assert isinstance(policy, dict)
    assert policy["primary"]["version"] == "1" and policy["primary"]["percent"] == 90.0
    assert policy["canary"]["version"] == "2" and policy["canary"]["percent"] == 10.0
    assert policy["canary"]["model_uri"] == "models:/fraud@challenger" and policy["canary"]["follow"] is True
    assert policy["shadow"] is None
    table = policy_gateway.cli("endpoints")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.strip("│ ").startswith("fraud ")]
    assert len(lines) == 2 and "primary" in lines[0] and "canary" in lines[1], table.stdout
    assert "90 %" in lines[0] and "10 %" in lines[1]


@pytest.mark.slow
def test_a_ten_percent_canary_takes_ten_percent_of_random_traffic(policy_gateway: PolicyGateway) -> None:
    answers = hammer(f"{policy_gateway.server.url}/endpoints/fraud/invocations", ROW, clients=16, total=20_000)
    assert len(answers) == 20_000
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} failed: {failed[:3]}"
    by_role = {(a.role, a.version) for a in answers}
    assert by_role == {("primary", "1"), ("canary", "2")}, by_role
    share = _share(answers, "canary")
    print(f"\ncanary share over 20,000 requests at 16 clients: {share:.2f} %")
    assert 8.5 <= share <= 11.5


@pytest.mark.slow
def test_route_keys_stick_to_one_version_and_split_ten_percent(policy_gateway: PolicyGateway) -> None:
    keys = [f"customer-{i}" for i in range(2000)]
    answers = hammer(
        f"{policy_gateway.server.url}/endpoints/fraud/invocations", ROW, clients=16, total=3 * len(keys), keys=keys
    )
    assert all(a.status == 200 for a in answers)
    versions: dict[str, set[str | None]] = {}
    for a in answers:
        versions.setdefault(str(a.key), set()).add(a.version)
    assert len(versions) == 2000
    split = {k: v for k, v in versions.items() if len(v) != 1}
    assert not split, f"{len(split)} keys reached two versions, e.g. {list(split.items())[:3]}"
    share = 100.0 * sum(v == {"2"} for v in versions.values()) / len(versions)
    print(f"\nkeys on the canary: {share:.2f} % of 2,000 (each key 3 requests, one version each)")
    assert 7.0 <= share <= 13.0


def test_v2_routes_by_key_and_by_version(policy_gateway: PolicyGateway) -> None:
    url = policy_gateway.server.url
    body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [0.5]} for c in COLUMNS]}
    for version, role in (("1", "primary"), ("2", "canary")):
        answer = httpx.post(f"{url}/v2/models/fraud/versions/{version}/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version and answer.headers["X-Lockgate-Role"] == role
    missing = httpx.post(f"{url}/v2/models/fraud/versions/3/infer", json=body, timeout=30)
    assert missing.status_code == 404 and "1 (primary), 2 (canary)" in missing.json()["error"]
    # One route key: one version, whatever the protocol.
    key = next(f"k{i}" for i in range(10_000) if _route(url, f"k{i}") == "canary")
    for _ in range(5):
        answer = httpx.post(f"{url}/v2/models/fraud/infer", json=body, headers={"X-Lockgate-Route-Key": key})
        assert answer.headers["X-Lockgate-Role"] == "canary" and answer.json()["model_version"] == "2"
    # The same key over gRPC, from a client lockgate did not write (metadata key, lower case).
    import tritonclient.grpc as triton_grpc

    primary_key = next(f"p{i}" for i in range(10_000) if _route(url, f"p{i}") == "primary")
    inputs = []
    for column in COLUMNS:
        tensor = triton_grpc.InferInput(column, [1], "FP64")
        tensor.set_data_from_numpy(np.array([0.5]))
        inputs.append(tensor)
    client = triton_grpc.InferenceServerClient(policy_gateway.grpc_address)
    try:
        for routed, version in ((key, "2"), (primary_key, "1")):
            for _ in range(5):
                result = client.infer("fraud", inputs, headers={"x-lockgate-route-key": routed})
                assert result.get_response().model_version == version, routed
    finally:
        client.close()


def _route(url: str, key: str) -> str:
    answer = httpx.post(f"{url}/endpoints/fraud/invocations", content=ROW,
                        headers={"Content-Type": "application/json", "X-Lockgate-Route-Key": key})  # fmt: skip
    return str(answer.headers["X-Lockgate-Role"])


@pytest.mark.slow
def test_shadow_disagreement_read_by_a_real_prometheus(policy_gateway: PolicyGateway, tmp_path: Path) -> None:
    url = f"{policy_gateway.server.url}/endpoints/labels/invocations"
    answers = hammer(url, PARITY_ROWS, clients=4, total=400)
    assert all(a.status == 200 and a.role == "primary" and a.version == "1" for a in answers)
    prometheus = Prometheus.start(tmp_path, policy_gateway.server.url)
    try:
        # Every copy is compared once it is scraped: 400 requests x 8 rows.
        compared = 'sum(lockgate_shadow_compared_rows_total{endpoint="labels"})'
        deadline = time.monotonic() + 60
        while float(prometheus.query(compared)[0]["value"][1]) < 3200:  # type: ignore[index]
            assert time.monotonic() < deadline, "the shadow never compared every copy"
            time.sleep(1)
        ratio = prometheus.query('lockgate_shadow_disagreement_ratio{endpoint="labels",version="2"}')
        value = float(ratio[0]["value"][1])  # type: ignore[index]
        dropped = prometheus.query('sum(lockgate_shadow_dropped_total{endpoint="labels"}) or vector(0)')
    finally:
        prometheus.stop()
    print(f"\nPromQL shadow disagreement: {value:.4f} (expected 0.25); dropped {dropped[0]['value'][1]}")
    assert abs(value - 0.25) <= 0.02


def _metric(server: Server, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_shadow_that_always_raises_never_reaches_a_client(policy_gateway: PolicyGateway) -> None:
    deployed = policy_gateway.cli("deploy", "models:/labels/1", "--name", "raising", "--shadow", "models:/labels/3")
    assert deployed.returncode == 0, deployed.stderr
    assert "shadow" in deployed.stdout and "models:/labels/3" in deployed.stdout
    answers = hammer(f"{policy_gateway.server.url}/endpoints/raising/invocations", PARITY_ROWS, clients=4, total=200)
    assert [a for a in answers if a.status != 200] == []
    assert {a.version for a in answers} == {"1"}
    deadline = time.monotonic() + 60
    counted = 0.0
    while time.monotonic() < deadline:
        counted = _metric(policy_gateway.server, "lockgate_shadow_requests_total", endpoint="raising", outcome="error")
        dropped = _metric(policy_gateway.server, "lockgate_shadow_dropped_total", endpoint="raising")
        if counted + dropped >= 200:
            break
        time.sleep(0.5)
    assert counted + dropped == 200 and counted > 0, (counted, dropped)
    assert _metric(policy_gateway.server, "lockgate_shadow_requests_total", endpoint="raising", outcome="ok") == 0
    # Dropping the shadow: through the CLI, by endpoint name.
    dropped_shadow = policy_gateway.cli("deploy", "raising", "--no-shadow")
    assert dropped_shadow.returncode == 0, dropped_shadow.stderr
    assert policy_gateway.endpoint("raising")["policy"]["shadow"] is None  # type: ignore[index]


@dataclass
class Live:
    role: str
    version: str
    since: float
    until: float = float("inf")


def _wait_for(gateway: PolicyGateway, name: str, role: str, version: str | None, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slot = gateway.endpoint(name)["policy"][role]  # type: ignore[index]
        if (slot or {}).get("version") == version:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{name}'s {role} never reached version {version}")


def _check_answers(answers: list[Answer], lives: list[Live]) -> None:
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed: {failed[:3]}"
    for a in answers:
        allowed = {(live.role, live.version) for live in lives if live.since <= a.ended and a.started <= live.until}
        assert (a.role, a.version) in allowed, f"{a.role} {a.version} answered at [{a.started}, {a.ended}]: {allowed}"


@pytest.mark.slow
def test_moves_and_promote_under_load_fail_nothing(policy_gateway: PolicyGateway) -> None:
    gateway, client = policy_gateway, policy_gateway.registry.client
    answer = httpx.post(f"{gateway.server.url}/admin/endpoints", timeout=300, json={
        "name": "moving", "model_uri": "models:/moving@champion",
        "canary": {"model_uri": "models:/moving@challenger", "percent": 50}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    started = time.monotonic()
    lives = [Live("primary", "1", started), Live("canary", "2", started)]
    stop = threading.Event()
    url = f"{gateway.server.url}/endpoints/moving/invocations"
    thread, box = in_background(lambda: hammer(url, ROW, clients=16, until=stop))
    try:
        time.sleep(1.0)
        # @challenger 2 -> 3: the canary swaps; then @champion 1 -> 2: the primary swaps.
        for role, alias, old, new in (("canary", "challenger", "2", "3"), ("primary", "champion", "1", "2")):
            begun = time.monotonic()
            client.set_registered_model_alias("moving", alias, new)
            done = _wait_for(gateway, "moving", role, new)
            lives.append(Live(role, new, begun))
            next(live for live in lives if live.role == role and live.version == old).until = done
            time.sleep(1.0)
        promoted_at = time.monotonic()
        promote = gateway.cli("promote", "moving")
        promoted = time.monotonic()
        assert promote.returncode == 0, promote.stderr
        assert "0 B fetched" in promote.stdout, promote.stdout
        lives.append(Live("primary", "3", promoted_at))
        next(live for live in lives if live.role == "primary" and live.version == "2").until = promoted
        next(live for live in lives if live.role == "canary" and live.version == "3").until = promoted
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(timeout=120)
    answers = box[0]
    assert len(answers) > 500, "the load must overlap the moves"
    _check_answers(answers, lives)
    late = [a for a in answers if a.started > promoted]
    assert late and {(a.role, a.version) for a in late} == {("primary", "3")}
    print(f"\nmoves and promote under load: {len(answers)} requests, 0 failed")
    # The promoted primary holds version 3 although @champion still names 2.
    time.sleep(1.5)  # three follow intervals
    state = gateway.endpoint("moving")
    assert state["version"] == "3" and state["model_uri"] == "models:/moving@champion"
    assert state["policy"]["canary"] is None  # type: ignore[index]


def test_lineage_at_names_the_policy_before_and_after_a_promote(policy_gateway: PolicyGateway) -> None:
    gateway = policy_gateway
    deployed = gateway.cli("deploy", "models:/lineage/1", "--name", "lineage", "--canary", "models:/lineage/2",
                           "--canary-percent", "12.5")  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    time.sleep(0.05)
    before = time.time()
    time.sleep(0.05)
    assert gateway.cli("promote", "lineage").returncode == 0
    time.sleep(0.05)
    after = time.time()

    def policy_at(moment: float) -> dict[str, dict[str, object] | None]:
        shown = gateway.cli("lineage", "lineage", "--at", str(moment), "--json")
        assert shown.returncode == 0, shown.stderr
        return dict(json.loads(shown.stdout)["policy"])

    then = policy_at(before)
    assert then["primary"]["to"]["version"] == "1" and then["primary"]["share"] == 87.5  # type: ignore[index]
    assert then["canary"]["to"]["version"] == "2" and then["canary"]["share"] == 12.5  # type: ignore[index]
    assert then["canary"]["to"]["reference"] == "models:/lineage/2"  # type: ignore[index]
    now = policy_at(after)
    assert now["primary"]["to"]["version"] == "2" and now["primary"]["share"] == 100.0  # type: ignore[index]
    assert now["primary"]["action"] == "promote" and now["canary"] is None  # type: ignore[index]
    text = gateway.cli("lineage", "lineage", "--at", str(before))
    assert "canary   version 2  12.5 % of requests" in text.stdout, text.stdout
    assert "primary  version 1  87.5 % of requests" in text.stdout, text.stdout


def test_bad_policies_are_named(policy_gateway: PolicyGateway) -> None:
    url = policy_gateway.server.url

    def deploy(**body: object) -> httpx.Response:
        return httpx.post(f"{url}/admin/endpoints", json=body, timeout=120)

    too_big = deploy(name="fraud", canary={"model_uri": "models:/fraud/2", "percent": 150})
    assert too_big.status_code == 422 and "percent" in too_big.text
    no_uri = deploy(name="labels", canary={"percent": 5})
    assert no_uri.status_code == 422 and "canary.model_uri is required" in no_uri.json()["message"]
    unknown = deploy(name="nope", canary={"model_uri": "models:/fraud/2", "percent": 5})
    assert unknown.status_code == 404 and "no endpoint 'nope'" in unknown.json()["message"]
    missing_model = deploy(name="labels", canary={"model_uri": "models:/no-such-model/1", "percent": 5})
    assert missing_model.status_code == 404 and "no-such-model" in missing_model.json()["message"]
    assert policy_gateway.endpoint("labels")["policy"]["canary"] is None  # type: ignore[index]
    # The primary moves, the canary cannot load: the answer says both.
    half = deploy(name="halfway", model_uri="models:/labels/1", canary={"model_uri": "models:/no-such/1", "percent": 5})
    assert half.status_code == 404, half.text
    assert "now serves version 1" in half.json()["message"] and "no-such" in half.json()["message"]
    assert policy_gateway.endpoint("halfway")["version"] == "1"
    # A canary that resolves but cannot load: refused, and counted as failed (it was exported
    # with result="ok").
    unloadable = deploy(name="halfway", canary={"model_uri": "models:/unloadable/1", "percent": 5})
    assert unloadable.status_code >= 400 and "never loads" in unloadable.json()["message"], unloadable.text
    assert policy_gateway.endpoint("halfway")["version"] == "1"
    deploys = [line for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
               if line.startswith("lockgate_deploys_total{") and 'endpoint="halfway"' in line
               and 'action="canary-failed"' in line]  # fmt: skip
    assert len(deploys) == 1 and 'result="failed"' in deploys[0] and deploys[0].endswith(" 1.0"), deploys
    promote = httpx.post(f"{url}/admin/endpoints/labels/promote", json={}, timeout=30)
    assert promote.status_code == 409 and "no canary" in promote.json()["message"]
    cli = policy_gateway.cli("deploy", "fraud")
    assert cli.returncode != 0 and "not a model URI" in cli.stderr
    cli = policy_gateway.cli("deploy", "models:/fraud/2", "--canary", "models:/fraud/3")
    assert cli.returncode != 0 and "--canary-percent" in cli.stderr


def test_canary_percent_zero_is_an_abort(policy_gateway: PolicyGateway) -> None:
    url = policy_gateway.server.url
    body = {"name": "aborting", "model_uri": "models:/labels/1", "shadow": {"model_uri": "models:/labels/2"},
            "canary": {"model_uri": "models:/labels/2", "percent": 30}}  # fmt: skip
    answer = httpx.post(f"{url}/admin/endpoints", timeout=300, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["policy"]["canary"]["percent"] == 30
    reweighed = policy_gateway.cli("deploy", "aborting", "--canary-percent", "40")
    assert reweighed.returncode == 0, reweighed.stderr
    assert policy_gateway.endpoint("aborting")["policy"]["canary"]["percent"] == 40  # type: ignore[index]
    aborted = policy_gateway.cli("deploy", "aborting", "--canary-percent", "0")
    assert aborted.returncode == 0, aborted.stderr
    policy = policy_gateway.endpoint("aborting")["policy"]
    assert policy["canary"] is None and policy["shadow"] is None  # type: ignore[index]
    events = httpx.get(f"{url}/endpoints/aborting/lineage").json()["events"]
    assert [(e["role"], e["action"]) for e in events] == [
        ("primary", "deploy"), ("canary", "deploy"), ("shadow", "deploy"), ("canary", "update"),
        ("canary", "abort"), ("shadow", "abort"),
    ]  # fmt: skip
    assert events[3]["percent"] == 40 and events[3]["actor"]
    # `lockgate abort` does the same.
    again = httpx.post(f"{url}/admin/endpoints", json={"name": "aborting", "shadow": {"model_uri": "models:/labels/2"}},
                       timeout=300)  # fmt: skip
    assert again.status_code == 200 and again.json()["policy"]["shadow"]["version"] == "2"
    aborted = policy_gateway.cli("abort", "aborting")
    assert aborted.returncode == 0 and "takes all the traffic" in aborted.stdout, aborted.stderr
    assert policy_gateway.endpoint("aborting")["policy"]["shadow"] is None  # type: ignore[index]
