"""The Helm chart, rendered and linted by Helm's own Go engine (helm-python-sdk), every object
validated by kubernetes-validate (strict) for Kubernetes 1.29 and the newest version it knows,
and the CRD objects (ServiceMonitor, PrometheusRule) against JSON schemas kept in the repo.

No cluster runs here: kind or k3s cannot start in this sandbox. Rendering, linting and schema
validation are what a cluster's API server would check first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "lockgate"
SCHEMAS = ROOT / "helm" / "schemas"
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule_v1.json",
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "s3 and external mlflow": {
        "store": {
            "uri": "s3://models/lockgate",
            "s3": {
                "endpointUrl": "http://seaweedfs.storage:8333",
                "region": "us-east-1",
                "credentialsSecret": {"name": "lockgate-s3"},
            },
        },
        "mlflow": {"trackingUri": "http://mlflow.mlops:5000", "credentialsSecret": {"name": "mlflow-auth"}},
        "adminToken": {"secretName": "lockgate-admin"},
        "apiTokens": {"secretName": "lockgate-api"},
        "endpoints": [
            {
                "name": "fraud",
                "modelUri": "models:/fraud@champion",
                "canary": {"modelUri": "models:/fraud@challenger", "percent": 12.5},
                "shadow": {"modelUri": "models:/fraud/9"},
            },
            {"name": "churn", "modelUri": "models:/churn/3", "follow": False, "onnx": False},
        ],
        "cache": {"persistentVolumeClaim": {"enabled": True, "size": "50Gi", "storageClassName": "fast"}},
        "replicaCount": 1,
    },
    "hpa and pdb": {
        "serving": {"grpcPort": 8081},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "payments"}}}],
        },
    },
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True},
        },
        "serving": {"batching": "off", "onnx": False},
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(CHART)
    try:
        manifests = chart.render(values, name="lg", namespace="serving", is_install=True)
    finally:
        chart.close()
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append(document)
    return objects


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


def test_renders_and_parses_as_yaml(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds(objects), name
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    for kube_version in KUBE_VERSIONS:
        report = helm_python.lint(CHART, VALUE_SETS[name], strict=True, kube_version=f"v{kube_version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{name} on {kube_version}: {problems}"


def test_kubernetes_validate_strict(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_crd_objects_match_the_schemas_in_the_repo(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    crds = [o for o in objects if (o["apiVersion"], o["kind"]) in CRD_SCHEMAS]
    if name == "monitoring":
        assert {o["kind"] for o in crds} == {"ServiceMonitor", "PrometheusRule"}
    for obj in crds:
        schema = json.loads(CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])].read_text())
        jsonschema.validate(obj, schema)


def test_the_crd_schemas_can_fail() -> None:
    objects = render(VALUE_SETS["monitoring"])
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    bad_rule = copy.deepcopy(rule)
    bad_rule["spec"]["groups"][0]["rules"][0]["record"] = "also_a_recording_rule"
    for bad, kind in ((bad_monitor, "ServiceMonitor"), (bad_rule, "PrometheusRule")):
        schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", kind)].read_text())
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_deployment_is_locked_down_and_probed() -> None:
    objects = render({})
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert cache["emptyDir"]["sizeLimit"] == "10Gi"
    assert container["args"] == ["--config", "/etc/lockgate/endpoints.yaml"]
    # No secret value is rendered from defaults: every credential is a secretKeyRef or absent.
    env_names = {e["name"] for e in container["env"]}
    assert not env_names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LOCKGATE_ADMIN_TOKEN"}


def test_secrets_are_references_only() -> None:
    objects = render(VALUE_SETS["s3 and external mlflow"])
    container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "LOCKGATE_ADMIN_TOKEN",
        "LOCKGATE_API_TOKENS",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"], name
    assert env["LOCKGATE_STORE"]["value"] == "s3://models/lockgate"
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlops:5000"
    assert "kind: Secret" not in (CHART / "values.yaml").read_text()


def test_endpoints_configmap_is_what_lockgate_serve_reads(tmp_path: Path) -> None:
    from lockgate.gateway.control.config_file import read_config
    from lockgate.gateway.control.traffic_policy import CanarySpec, ShadowSpec

    objects = render(VALUE_SETS["s3 and external mlflow"])
    configmap = next(o for o in objects if o["kind"] == "ConfigMap" and "endpoints.yaml" in o["data"])
    path = tmp_path / "endpoints.yaml"
    path.write_text(configmap["data"]["endpoints.yaml"])
    specs = read_config(path)
    assert [(s.name, s.model_uri, s.follow) for s in specs] == [
        ("fraud", "models:/fraud@champion", None),
        ("churn", "models:/churn/3", False),
    ]
    assert specs[1].options is not None and specs[1].options.onnx is False
    assert specs[0].canary == CanarySpec("models:/fraud@challenger", 12.5)
    assert specs[0].shadow == ShadowSpec("models:/fraud/9")
    assert specs[1].canary is None and specs[1].shadow is None


def test_prometheus_rule_carries_the_shipped_alerts() -> None:
    assert (CHART / "files" / "alerts.yaml").read_bytes() == (ROOT / "monitoring" / "alerts.yaml").read_bytes()
    assert (CHART / "files" / "lockgate-dashboard.json").read_bytes() == (
        ROOT / "monitoring" / "dashboards" / "lockgate.json"
    ).read_bytes()
    rule = next(o for o in render(VALUE_SETS["monitoring"]) if o["kind"] == "PrometheusRule")
    shipped = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"]
    dashboard = next(o for o in render(VALUE_SETS["monitoring"]) if o["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dashboard["data"]["lockgate.json"])["uid"] == "lockgate"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": 3}, "replicaCont"),
        ({"serving": {"maxBatchRows": "many"}}, "maxBatchRows"),
        ({"serving": {"batching": "sometimes"}}, "batching"),
        ({"endpoints": [{"name": "x", "modelUri": "s3://not-a-model-uri"}]}, "modelUri"),
        (
            {
                "endpoints": [
                    {"name": "x", "modelUri": "models:/x/1", "canary": {"modelUri": "models:/x/2", "percent": 150}}
                ]
            },
            "percent",
        ),
        ({"endpoints": [{"name": "x", "modelUri": "models:/x/1", "shadow": {"uri": "models:/x/2"}}]}, "uri"),
        ({"endpoints": [{"name": "x", "model_uri": "models:/x/1"}]}, "model_uri"),
        ({"cache": {"sizeLimit": "ten gigs"}}, "sizeLimit"),
        ({"store": {"s3": {"accessKey": "AKIA..."}}}, "accessKey"),
        ({"autoscaling": {"enabled": "yes"}}, "enabled"),
        ({"endpoints": [{"name": "../x", "modelUri": "models:/x/1"}]}, "name"),
        ({"endpoints": [{"name": "a/b", "modelUri": "models:/x/1"}]}, "name"),
        ({"endpoints": [{"name": "x" * 64, "modelUri": "models:/x/1"}]}, "name"),
        ({"apiTokens": {"token": "inline-secret"}}, "token"),
        ({"serving": {"server": "hypercorn"}}, "server"),
    ],
)
def test_bad_values_are_rejected(values: dict[str, Any], complaint: str) -> None:
    chart = helm_python.Chart.load(CHART)
    try:
        with pytest.raises(helm_python.HelmError) as caught:
            chart.render(values, name="lg", namespace="serving", is_install=True)
    finally:
        chart.close()
    assert complaint in str(caught.value)


def test_notes_print_a_curl_to_try() -> None:
    chart = helm_python.Chart.load(CHART)
    try:
        manifests = chart.render({}, name="lg", namespace="serving", is_install=True)
    finally:
        chart.close()
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "curl -s http://127.0.0.1:8080/endpoints/diabetes/example" in notes
    assert "/endpoints/diabetes/invocations" in notes
    assert "port-forward svc/lg-lockgate" in notes


def test_grpc_port_opens_the_v2_grpc_service() -> None:
    """serving.grpcPort: the env var lockgate reads, a named container port and a Service port."""
    off = render({})
    container = next(o for o in off if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "LOCKGATE_GRPC_PORT" not in {e["name"] for e in container["env"]}
    on = render({"serving": {"grpcPort": 8081}})
    container = next(o for o in on if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "LOCKGATE_GRPC_PORT", "value": "8081"} in container["env"]
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = next(o for o in on if o["kind"] == "Service")
    assert {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP"} in service["spec"]["ports"]
    policy = render({"serving": {"grpcPort": 8081}, "networkPolicy": {"enabled": True}})
    ingress = next(o for o in policy if o["kind"] == "NetworkPolicy")["spec"]["ingress"][0]["ports"]
    assert {"port": "grpc", "protocol": "TCP"} in ingress


def test_the_http_server_is_a_value_uvicorn_by_default() -> None:
    """serving.server reaches lockgate as LOCKGATE_SERVER (Settings.server reads it)."""

    def server_of(values: dict[str, Any]) -> Any:
        objects = render(values)
        container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}.get("LOCKGATE_SERVER")

    assert server_of({}) == "uvicorn"
    assert server_of({"serving": {"server": "granian"}}) == "granian"


def test_safe_load_is_a_value() -> None:
    """serving.allowModelCodeExecution: unset leaves the decision to MLflow's variable; false and
    true reach lockgate as LOCKGATE_ALLOW_MODEL_CODE_EXECUTION; anything else is refused."""

    def env_of(values: dict[str, Any]) -> dict[str, Any]:
        objects = render(values)
        container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "LOCKGATE_ALLOW_MODEL_CODE_EXECUTION" not in env_of({})
    assert env_of({"serving": {"allowModelCodeExecution": False}})["LOCKGATE_ALLOW_MODEL_CODE_EXECUTION"] == "false"
    assert env_of({"serving": {"allowModelCodeExecution": True}})["LOCKGATE_ALLOW_MODEL_CODE_EXECUTION"] == "true"
    chart = helm_python.Chart.load(CHART)
    try:
        with pytest.raises(helm_python.HelmError, match="allowModelCodeExecution"):
            bad = {"serving": {"allowModelCodeExecution": "no"}}
            chart.render(bad, name="lg", namespace="serving", is_install=True)
    finally:
        chart.close()


def test_trusted_signers_come_from_a_secret_and_reach_lockgate() -> None:
    """signing.trustedSigners: the named keys of an existing Secret, mounted read-only and listed
    in LOCKGATE_TRUSTED_SIGNERS; requireSignature as LOCKGATE_REQUIRE_SIGNATURE."""
    keys = ["release-2026.pub", "release-2027.pub"]
    values = {"signing": {"requireSignature": True, "trustedSigners": {"secretName": "model-keys", "keys": keys}}}
    deployment = next(o for o in render(values) if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (
        env["LOCKGATE_TRUSTED_SIGNERS"]
        == "/etc/lockgate-signers/release-2026.pub,/etc/lockgate-signers/release-2027.pub"
    )
    assert env["LOCKGATE_REQUIRE_SIGNATURE"] == "true"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "trusted-signers")
    assert mount["mountPath"] == "/etc/lockgate-signers" and mount["readOnly"] is True
    volume = next(v for v in deployment["volumes"] if v["name"] == "trusted-signers")
    assert volume["secret"]["secretName"] == "model-keys"
    plain = next(o for o in render({}) if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert all(v["name"] != "trusted-signers" for v in plain["volumes"])
    assert {e["name"]: e.get("value") for e in plain["containers"][0]["env"]}["LOCKGATE_REQUIRE_SIGNATURE"] == "false"
    chart = helm_python.Chart.load(CHART)
    try:
        with pytest.raises(helm_python.HelmError, match="keys"):
            bad = {"signing": {"trustedSigners": {"secretName": "k", "keys": ["../escape"]}}}
            chart.render(bad, name="lg", namespace="serving", is_install=True)
    finally:
        chart.close()
