"""The KServe manifests (kserve/): valid against the schemas of the KServe CRD fields they use
(kserve/schemas/, written in the repo), their container a valid Kubernetes container, and
consistent with lockgate itself: the runtime's args are flags ``lockgate serve`` takes, the
InferenceService picks this runtime, its format and protocol, and its name is a valid endpoint.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lockgate.gateway.cli.main import app as cli_app
from lockgate.gateway.control.endpoint_names import check_endpoint_name
from lockgate.loader.model_uri import parse_model_uri

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = yaml.safe_load((ROOT / "kserve/cluster-serving-runtime.yaml").read_text())
SERVICE = yaml.safe_load((ROOT / "kserve/inference-service.yaml").read_text())
STORAGE = yaml.safe_load((ROOT / "kserve/cluster-storage-container.yaml").read_text())
PINNED = yaml.safe_load((ROOT / "kserve/inference-service-initializer.yaml").read_text())
SCHEMAS = {
    "ClusterServingRuntime": json.loads((ROOT / "kserve/schemas/clusterservingruntime_v1alpha1.json").read_text()),
    "InferenceService": json.loads((ROOT / "kserve/schemas/inferenceservice_v1beta1.json").read_text()),
    "ClusterStorageContainer": json.loads((ROOT / "kserve/schemas/clusterstoragecontainer_v1alpha1.json").read_text()),
}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize(
    "manifest", [RUNTIME, SERVICE, STORAGE, PINNED], ids=["runtime", "inference-service", "storage", "pinned"]
)
def test_manifests_match_the_kserve_schemas(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, SCHEMAS[manifest["kind"]])


@pytest.mark.parametrize(
    ("manifest", "path", "value"),
    [
        (RUNTIME, ("spec", "protocolVersions"), ["v3"]),
        (RUNTIME, ("spec", "supportedModelFormat"), [{"name": "mlflow"}]),  # a typo'd field
        (SERVICE, ("spec", "predictor", "model", "protocolVersion"), "V2"),
        (SERVICE, ("spec", "predictor", "model", "storageURI"), "models:/x/1"),  # a typo'd field
        (STORAGE, ("spec", "workloadType"), "sidecar"),
        (STORAGE, ("spec", "supportedUriFormats"), [{"prefix": "models:/", "regex": ".*"}]),
        (STORAGE, ("spec", "container", "comand"), ["lockgate"]),  # a typo'd field
    ],
)
def test_the_schemas_can_fail(manifest: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    broken = copy.deepcopy(manifest)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS[broken["kind"]])


def test_the_runtime_container_is_a_valid_kubernetes_container() -> None:
    """KServe copies the container into the predictor pod: validate it there, strictly."""
    container = copy.deepcopy(RUNTIME["spec"]["containers"][0])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fraud-predictor"},
        "spec": {"containers": [container], "volumes": RUNTIME["spec"]["volumes"]},
    }
    kubernetes_validate.validate(pod, "1.29", strict=True)
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts <= {v["name"] for v in RUNTIME["spec"]["volumes"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/var/lib/lockgate" for m in container["volumeMounts"]), "the cache is writable"


def test_the_runtime_args_are_what_lockgate_serve_takes() -> None:
    """With KServe's and Kubernetes' substitutions made, the args parse as `lockgate serve` flags."""
    container = RUNTIME["spec"]["containers"][0]
    model_uri = env_of(SERVICE["spec"]["predictor"]["model"])["LOCKGATE_MODEL_URI"]
    args = [
        a.replace("$(LOCKGATE_MODEL_URI)", model_uri).replace("{{.Name}}", SERVICE["metadata"]["name"])
        for a in container["args"]
    ]
    import typer.main

    command = typer.main.get_command(cli_app)
    serve = command.commands["serve"]  # type: ignore[attr-defined]
    context = serve.make_context("serve", list(args))
    assert context.params["model_uris"] == [model_uri]
    assert context.params["name"] == [SERVICE["metadata"]["name"]]
    assert context.params["port"] == 8080
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_the_inference_service_picks_this_runtime() -> None:
    model = SERVICE["spec"]["predictor"]["model"]
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    formats = {(f["name"], f.get("version")) for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    assert "storageUri" not in model, "lockgate fetches from its store itself: no storage initializer"
    env = env_of(model)
    reference = parse_model_uri(env["LOCKGATE_MODEL_URI"])
    assert reference.moves, "the example follows an alias"
    check_endpoint_name(SERVICE["metadata"]["name"])
    secrets = [e for e in model["env"] if "valueFrom" in e]
    assert secrets and all("value" not in e for e in secrets), "credentials are secret references only"


def test_the_storage_initializer_runs_lockgate_materialize_on_what_it_claims() -> None:
    """KServe appends [storageUri, /mnt/models] to the container's command: that must be a
    `lockgate materialize` call, on a URI lockgate parses, for every prefix the manifest claims."""
    import typer.main

    container = STORAGE["spec"]["container"]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "init"}, "spec": {"containers": [container]}},
        "1.29", strict=True,
    )  # fmt: skip
    assert container["command"][:2] == ["lockgate", "materialize"] and "args" not in container
    model = PINNED["spec"]["predictor"]["model"]
    storage_uri = model["storageUri"]
    assert any(storage_uri.startswith(f["prefix"]) for f in STORAGE["spec"]["supportedUriFormats"])
    parse_model_uri(storage_uri)
    for prefix, example in (("models:/", "models:/fraud/3"), ("lockgate://", "lockgate://models@v1/fraud")):
        assert {"prefix": prefix} in STORAGE["spec"]["supportedUriFormats"]
        parse_model_uri(example)
    command = typer.main.get_command(cli_app)
    materialize = command.commands["materialize"]  # type: ignore[attr-defined]
    context = materialize.make_context("materialize", [storage_uri, "/mnt/models"])
    assert context.params == {**context.params, "model_uri": storage_uri, "destination": "/mnt/models"}
    secrets = [e for e in container["env"] if "valueFrom" in e]
    assert secrets and all("value" not in e for e in secrets), "credentials are secret references only"


def test_the_pinned_service_serves_what_the_initializer_wrote() -> None:
    model = PINNED["spec"]["predictor"]["model"]
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    assert env_of(model)["LOCKGATE_MODEL_URI"] == "/mnt/models", "the runtime's args serve the materialized copy"
    check_endpoint_name(PINNED["metadata"]["name"])
