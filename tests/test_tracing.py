"""OpenTelemetry traces (issue 37), received by a real OTLP receiver: MLflow's own tracking server
(``/v1/traces``), which here is also the model registry.

- One request with a W3C ``traceparent`` (on ``/invocations``, V2 REST and V2 gRPC) lands in
  MLflow under that trace id: the request's span, a child of the caller's, with the endpoint,
  role, protocol, rows, serving path, model version, weights commit and dataset commit, and
  children ``decode``, ``predict`` (linked to its ``lockgate.batch`` span) and ``encode``.
- A deploy lands as ``lockgate.deploy`` with ``resolve``, ``fetch``, ``load`` and ``prepare``.
- Off unless ``OTEL_*`` configure it; a setting lockgate cannot honour is one clear error.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from lockgate.gateway import tracing
from tests.registry_helpers import PIP_REQUIREMENTS, registry_at
from tests.servers import Server, free_port, start_lockgate

pytestmark = pytest.mark.slow

IRIS = load_iris(as_frame=True)
COLUMNS = list(IRIS.data.columns)
ROWS = IRIS.data.head(3).to_numpy().tolist()


class Traced:
    def __init__(self, server: Server, mlflow_url: str, grpc_port: int, model: str, experiment: str) -> None:
        self.server = server
        self.model = model
        self.experiment = experiment
        self.client = MlflowClient(mlflow_url)
        self.grpc_address = f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def traced(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """One gateway for the module, on the session's ``mlflow server`` (registry and OTLP receiver)."""
    workdir = tmp_path_factory.mktemp("traced")
    # The mlflow server is the session's: a name of this module's own, for a version 1 in this store.
    model = f"iris-traced-{secrets.token_hex(4)}"
    with registry_at(workdir, mlflow_server) as registry:
        mlflow.set_experiment(experiment_id=registry.experiment())
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS.target), name="model",
                pip_requirements=PIP_REQUIREMENTS, registered_model_name=model, input_example=IRIS.data.head(3),
            )  # fmt: skip
    experiment = MlflowClient(mlflow_server).create_experiment(f"lockgate-traces-{secrets.token_hex(4)}")
    grpc_port = free_port()
    env = registry.gateway_env(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{mlflow_server}/v1/traces",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS=f"x-mlflow-experiment-id={experiment}",
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans leave within a tenth of a second
    )
    server = start_lockgate(
        workdir, env, f"models:/{model}/1", "--name", "iris", "--grpc-port", str(grpc_port), ready_path="/ready"
    )
    try:
        yield Traced(server, mlflow_server, grpc_port, model, experiment)
    finally:
        server.stop()


def new_traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def invoke_traced(traced: Traced) -> tuple[str, str]:
    """One ``/invocations`` request under a new caller span: (its trace id, the caller's span id)."""
    traceparent, trace_id, parent_id = new_traceparent()
    answer = httpx.post(
        f"{traced.server.url}/invocations",
        json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        headers={"traceparent": traceparent},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return trace_id, parent_id


def spans_of(traced: Traced, trace_id: str, wanted: set[str], timeout: float = 30.0) -> dict[str, Any]:
    """The spans MLflow holds for ``trace_id`` by name, once every name in ``wanted`` is there."""
    deadline = time.monotonic() + timeout
    names: set[str] = set()
    while time.monotonic() < deadline:
        try:
            trace = traced.client.get_trace(f"tr-{trace_id}")
        except Exception:
            trace = None
        if trace is not None:
            spans = {span.name: span for span in trace.data.spans}
            names = set(spans)
            if wanted <= names:
                return spans
        time.sleep(0.3)
    raise AssertionError(f"trace {trace_id}: spans {sorted(names)}, wanted {sorted(wanted)}; {traced.server.log()}")


def assert_request_span(span: Any, parent_id: str, protocol: str) -> None:
    attributes = span.attributes
    assert span.parent_id is not None and span.parent_id.endswith(parent_id), (span.parent_id, parent_id)
    assert attributes["lockgate.endpoint"] == "iris"
    assert attributes["lockgate.role"] == "primary"
    assert attributes["lockgate.protocol"] == protocol
    assert attributes["lockgate.rows"] == 3
    assert attributes["lockgate.serving_path"] in ("onnx", "sklearn")
    assert attributes["lockgate.model.version"] == "1"
    assert len(attributes["lockgate.weights_commit"]) == 64
    assert "lockgate.dataset_commit" in attributes


def test_a_traced_request_continues_the_callers_trace_in_mlflow(traced: Traced) -> None:
    url = traced.server.url
    trace_id, parent_id = invoke_traced(traced)
    spans = spans_of(traced, trace_id, {"mlflow iris", "decode", "predict", "encode"})
    request = spans["mlflow iris"]
    assert_request_span(request, parent_id, "mlflow")
    for child in ("decode", "predict", "encode"):
        assert spans[child].parent_id == request.span_id, child

    # V2 REST, the same way in.
    traceparent, trace_id, parent_id = new_traceparent()
    body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [3], "data": [r[i] for r in ROWS]}
                       for i, c in enumerate(COLUMNS)]}  # fmt: skip
    answer = httpx.post(f"{url}/v2/models/iris/infer", json=body, headers={"traceparent": traceparent}, timeout=60)
    assert answer.status_code == 200, answer.text
    spans = spans_of(traced, trace_id, {"v2-rest iris", "decode", "predict", "encode"})
    assert_request_span(spans["v2-rest iris"], parent_id, "v2-rest")


def test_a_grpc_call_continues_the_trace_from_its_metadata(traced: Traced) -> None:
    import tritonclient.grpc as triton

    traceparent, trace_id, parent_id = new_traceparent()
    client = triton.InferenceServerClient(traced.grpc_address)
    inputs = []
    for i, column in enumerate(COLUMNS):
        tensor = triton.InferInput(column, [3], "FP64")
        import numpy as np

        tensor.set_data_from_numpy(np.array([row[i] for row in ROWS], dtype=np.float64))
        inputs.append(tensor)
    result = client.infer("iris", inputs, headers={"traceparent": traceparent})
    assert result.as_numpy("predict") is not None
    spans = spans_of(traced, trace_id, {"v2-grpc iris", "predict"})
    assert_request_span(spans["v2-grpc iris"], parent_id, "v2-grpc")


def test_predict_spans_link_to_the_batch_they_joined(traced: Traced) -> None:
    trace_id, _ = invoke_traced(traced)
    predict = spans_of(traced, trace_id, {"predict"})["predict"]
    assert predict.links, "the predict span carries no link to its batch"
    link = predict.links[0]
    batch = spans_of(traced, link.trace_id.removeprefix("tr-"), {"lockgate.batch"})["lockgate.batch"]
    assert batch.span_id == link.span_id
    assert batch.attributes["lockgate.batch.rows"] >= 3 and batch.attributes["lockgate.batch.requests"] >= 1


def test_a_deploy_is_one_span_with_its_phases(traced: Traced) -> None:
    deployed = httpx.post(
        f"{traced.server.url}/admin/endpoints",
        json={"name": "iris-again", "model_uri": f"models:/{traced.model}/1"},
        timeout=120,
    )
    assert deployed.status_code in (200, 201), deployed.text
    deadline = time.monotonic() + 30
    spans = None
    while time.monotonic() < deadline:
        for trace in traced.client.search_traces(experiment_ids=[traced.experiment], max_results=50):
            named = {span.name: span for span in trace.data.spans}
            root = named.get("lockgate.deploy")
            if root is not None and root.attributes.get("lockgate.endpoint") == "iris-again":
                spans = named
                break
        if spans is not None and {"resolve", "fetch", "load", "prepare"} <= set(spans):
            break
        time.sleep(0.3)
    assert spans is not None, traced.server.log()
    assert {"resolve", "fetch", "load", "prepare"} <= set(spans), sorted(spans)
    root = spans["lockgate.deploy"]
    assert root.parent_id is None
    assert root.attributes["lockgate.model_version"] == "1"
    assert len(root.attributes["lockgate.weights_commit"]) == 64
    for phase in ("resolve", "fetch", "load", "prepare"):
        assert spans[phase].parent_id == root.span_id, phase


# -- off unless configured ---------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_is_configured() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "x"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})


def test_an_exporter_lockgate_does_not_ship_is_one_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "zipkin", "LOCKGATE_CACHE_DIR": str(tmp_path / "cache"),
           "LOCKGATE_STORE": str(tmp_path / "store"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}  # fmt: skip
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lockgate")), "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "OTEL_TRACES_EXPORTER='zipkin'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_configuring_again_replaces_the_tracer_and_off_means_none() -> None:
    try:
        assert tracing.configure({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
        first = tracing.STATE.tracer
        assert first is not None
        assert tracing.configure({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
        assert tracing.STATE.tracer is not None and tracing.STATE.tracer is not first
        assert not tracing.configure({})
        assert tracing.STATE.tracer is None and tracing.STATE.provider is None
    finally:
        tracing.shutdown()
