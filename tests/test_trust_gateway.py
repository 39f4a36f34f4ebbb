"""The gateway tried as an attacker would, against a real uvicorn (``lockgate serve``) on a real
sqlite registry and store: hostile endpoint names, a browser on the same host forging admin
actions, client mistakes that used to be 5xx, a column bomb, and optional prediction auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockgate.store import Store
from tests.registry_helpers import Registry, registry_at, weights
from tests.servers import Server, free_port, start_lockgate

PAYLOAD = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 1.0, 1.0]]}}).encode()
JSON = {"Content-Type": "application/json"}
HOSTILE_NAMES = ["../x", "a/b", ".", "..", "a\x00b", "a\nb", "x" * 64, "-lead", "", "x" * 10_000, "naïve"]


@pytest.fixture(scope="module")
def trust_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module: two versions of a 3-column model (a, b, c)."""
    with registry_at(tmp_path_factory.mktemp("trust")) as registry:
        for seed in (1, 2):
            registry.log_weights_model("trusty", weights(seed, rows=64, cols=4))
    yield registry


@pytest.fixture(scope="module")
def gateway(trust_registry: Registry) -> Iterator[Server]:
    env = trust_registry.gateway_env(LOCKGATE_MAX_EXTRA_COLUMNS="64")
    server = start_lockgate(trust_registry.workdir, env, "models:/trusty/1", "--name", "trusty", ready_path="/ready")
    yield server
    server.stop()


def version_of(server: Server, name: str = "trusty") -> str:
    return str(httpx.get(f"{server.url}/endpoints/{name}").json()["version"])


# -- 2. endpoint names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_422_through_the_api(gateway: Server, name: str) -> None:
    answer = httpx.post(
        f"{gateway.url}/admin/endpoints", json={"name": name, "model_uri": "models:/trusty/2"}, timeout=60
    )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "name" in body["message"]
    assert set(body) == {"error_code", "message"}


def test_the_ledger_keeps_every_endpoint_after_hostile_names(gateway: Server, trust_registry: Registry) -> None:
    for name in ("../x", "a/b", "x" * 64):
        httpx.post(f"{gateway.url}/admin/endpoints", json={"name": name, "model_uri": "models:/trusty/2"}, timeout=60)
    good = httpx.post(
        f"{gateway.url}/admin/endpoints", json={"name": "after-attack", "model_uri": "models:/trusty/2"}, timeout=120
    )
    assert good.status_code == 200, good.text
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert "lockgate_ledger_events_pending 0.0" in metrics
    assert "lockgate_ledger_events_rejected_total 0.0" in metrics
    store = Store.open(trust_registry.store_root)
    commit = store.resolve("lockgate-ledger", "main")
    persisted = store.list_files(commit, "events")
    assert any(p.startswith("events/after-attack/") for p in persisted), "the good deploy never reached the store"
    assert all(p.split("/")[1] in {"trusty", "after-attack"} for p in persisted), sorted(persisted)
    assert httpx.delete(f"{gateway.url}/admin/endpoints/after-attack").status_code == 200


def test_hostile_names_through_the_cli_and_the_config_file(trust_registry: Registry, tmp_path: Path) -> None:
    lockgate = str(Path(sys.executable).with_name("lockgate"))
    env = {**os.environ, **trust_registry.gateway_env()}
    serve = subprocess.run(
        [lockgate, "serve", "models:/trusty/1", "--name", "../x", "--port", "1"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert serve.returncode == 1 and "invalid endpoint name '../x'" in serve.stderr
    assert "letters, digits" in serve.stderr and len(serve.stderr.strip().splitlines()) == 1, serve.stderr
    config = tmp_path / "endpoints.yaml"
    config.write_text("endpoints:\n  - name: a/b\n    model_uri: models:/trusty/1\n")
    served = subprocess.run(
        [lockgate, "serve", "--config", str(config), "--port", "1"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert served.returncode == 1 and "endpoints[0]" in served.stderr and "'a/b'" in served.stderr, served.stderr
    assert len(served.stderr.strip().splitlines()) == 1, served.stderr


def test_default_names_are_fitted_to_the_rule() -> None:
    from lockgate.gateway.control.endpoint_names import default_name

    assert default_name("models:/fraud/Production") == "fraud"
    assert default_name("models:/My Fraud Model@champion") == "My-Fraud-Model"
    assert default_name("lockgate://models@main/fraud/v1.2") == "v1-2"


# -- 3. cross-site request forgery -----------------------------------------------------------

# Exactly what Chromium sends for `fetch(url, {method: "POST", mode: "no-cors"})` from a page on
# another site: a "simple" request, so no CORS preflight is made and the request goes out.
BROWSER_CROSS_SITE = {
    "Origin": "http://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
    "Content-Type": "text/plain;charset=UTF-8",
    "Referer": "http://evil.example/",
}


def serving_version_2(gateway: Server) -> None:
    """trusty serves version 2, with version 1 before it to roll back to. Each test below sets
    this up itself, so none relies on another having run first."""
    if version_of(gateway) != "2":
        deployed = httpx.post(
            f"{gateway.url}/admin/endpoints", json={"name": "trusty", "model_uri": "models:/trusty/2"}, timeout=120
        )
        assert deployed.status_code == 200, deployed.text
    assert version_of(gateway) == "2"


def test_a_cross_site_rollback_is_refused(gateway: Server) -> None:
    serving_version_2(gateway)
    answer = httpx.post(f"{gateway.url}/admin/endpoints/trusty/rollback", headers=BROWSER_CROSS_SITE)
    assert answer.status_code == 403 and "another site" in answer.json()["message"]
    assert version_of(gateway) == "2", "the forged rollback went through"


def test_a_cross_site_form_deploy_is_refused(gateway: Server) -> None:
    serving_version_2(gateway)
    # An HTML form post: urlencoded, no preflight.
    headers = {**BROWSER_CROSS_SITE, "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Mode": "navigate"}
    body = '{"name": "trusty", "model_uri": "models:/trusty/1", "x": "'
    answer = httpx.post(f"{gateway.url}/admin/endpoints", content=body + '"}', headers=headers)
    assert answer.status_code == 403, answer.text
    assert version_of(gateway) == "2"


def test_a_same_site_page_on_another_port_is_refused(gateway: Server) -> None:
    serving_version_2(gateway)
    # localhost:3000 (a dev server) is "same-site" with the gateway, but not the same origin.
    headers = {"Origin": "http://127.0.0.1:3000", "Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}
    answer = httpx.post(f"{gateway.url}/admin/endpoints/trusty/rollback", headers=headers, content=b"{}")
    assert answer.status_code == 403 and version_of(gateway) == "2"


def test_an_old_browser_without_fetch_metadata_is_refused_by_origin(gateway: Server) -> None:
    serving_version_2(gateway)
    headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    answer = httpx.delete(f"{gateway.url}/admin/endpoints/trusty", headers=headers)
    assert answer.status_code == 403 and version_of(gateway) == "2"


def test_admin_posts_must_be_json(gateway: Server) -> None:
    serving_version_2(gateway)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = httpx.post(f"{gateway.url}/admin/endpoints/trusty/rollback", headers=headers, content=b"{}")
        assert answer.status_code == 415, (content_type, answer.text)
        assert answer.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert version_of(gateway) == "2"


def test_the_gateways_own_origin_may_call_admin(gateway: Server) -> None:
    serving_version_2(gateway)
    headers = {"Origin": gateway.url, "Sec-Fetch-Site": "same-origin", **JSON}
    answer = httpx.post(f"{gateway.url}/admin/endpoints/trusty/rollback", headers=headers, content=b"{}", timeout=60)
    assert answer.status_code == 200 and version_of(gateway) == "1"


# -- 4. client mistakes are 4xx --------------------------------------------------------------


def test_non_ascii_authorization_is_4xx(gateway: Server, trust_registry: Registry) -> None:
    headers = [(b"Authorization", "Bearer sécret".encode()), (b"Content-Type", b"application/json")]
    # No admin token configured: the header is ignored, the loopback rule applies.
    assert httpx.post(f"{gateway.url}/admin/endpoints", headers=headers, content=b"{}").status_code == 422
    server = start_lockgate(trust_registry.workdir, trust_registry.gateway_env(LOCKGATE_ADMIN_TOKEN="s3cret"))
    try:
        answer = httpx.post(f"{server.url}/admin/endpoints", headers=headers, content=b'{"model_uri": "models:/x/1"}')
        assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED"
    finally:
        server.stop()


def test_a_bogus_model_uri_without_a_name_is_400(gateway: Server) -> None:
    answer = httpx.post(f"{gateway.url}/admin/endpoints", json={"model_uri": "bogus"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "bogus" in answer.json()["message"]


def test_rollback_with_nothing_to_go_back_to_is_409_and_says_what_to_do(gateway: Server) -> None:
    deployed = httpx.post(
        f"{gateway.url}/admin/endpoints", json={"name": "fresh", "model_uri": "models:/trusty/1"}, timeout=120
    )
    assert deployed.status_code == 200
    answer = httpx.post(f"{gateway.url}/admin/endpoints/fresh/rollback", json={})
    assert answer.status_code == 409 and answer.json()["error_code"] == "INVALID_STATE"
    assert "lockgate deploy" in answer.json()["message"]
    httpx.delete(f"{gateway.url}/admin/endpoints/fresh")


@pytest.mark.parametrize("route", ["/invocations", "/endpoints/trusty/invocations"])
def test_deep_json_and_huge_integers_are_400(gateway: Server, route: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    huge = b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[' + b"9" * 5000 + b", 1, 1]]}}"
    for body in (deep, b'{"dataframe_split": ' + deep + b"}", huge):
        answer = httpx.post(f"{gateway.url}{route}", content=body, headers=JSON, timeout=60)
        assert answer.status_code == 400, answer.text[:300]
        assert answer.json()["error_code"] == "BAD_REQUEST"
    assert httpx.post(f"{gateway.url}{route}", content=PAYLOAD, headers=JSON).status_code == 200


# -- 5. the column bomb ----------------------------------------------------------------------


def column_bomb(columns: int) -> bytes:
    names = [f"c{i}" for i in range(columns)]
    return json.dumps({"dataframe_split": {"columns": names, "data": [[0] * columns]}}).encode()


def test_a_column_bomb_is_refused_before_pandas(gateway: Server) -> None:
    bomb = column_bomb(1_000_000)
    assert len(bomb) > 10_000_000
    answer = httpx.post(f"{gateway.url}/invocations", content=bomb, headers=JSON, timeout=120)
    assert answer.status_code == 400 and "1,000,000 columns" in answer.json()["message"]
    records = json.dumps({"dataframe_records": [{f"c{i}": 0 for i in range(5000)}]}).encode()
    assert httpx.post(f"{gateway.url}/invocations", content=records, headers=JSON).status_code == 400
    csv = (",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("0" * 5000) + "\n").encode()
    answer = httpx.post(f"{gateway.url}/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 400
    assert httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON).status_code == 200


def test_extra_columns_within_the_limit_still_reach_mlflow(gateway: Server) -> None:
    # 3 signature columns + 64 allowed extras (LOCKGATE_MAX_EXTRA_COLUMNS=64): MLflow drops extras.
    names = ["a", "b", "c", *[f"extra{i}" for i in range(64)]]
    body = json.dumps({"dataframe_split": {"columns": names, "data": [[1.0] * len(names)]}}).encode()
    answer = httpx.post(f"{gateway.url}/invocations", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    plain = httpx.post(f"{gateway.url}/invocations", content=PAYLOAD, headers=JSON)
    assert answer.json() == plain.json()


# -- 7. optional auth on prediction routes ---------------------------------------------------


def check_v2_tokens(url: str, grpc_address: str) -> None:
    """The same tokens guard V2 inference, REST ({"error"} with 401/403) and gRPC (statuses)."""
    import numpy as np
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 1.0, 1.0]}]}
    missing = httpx.post(f"{url}/v2/models/trusty/infer", json=body)
    assert missing.status_code == 401 and "LOCKGATE_API_TOKENS" in missing.json()["error"]
    wrong = httpx.post(f"{url}/v2/models/trusty/infer", json=body, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 403 and set(wrong.json()) == {"error"}
    good = httpx.post(f"{url}/v2/models/trusty/infer", json=body, headers={"Authorization": "Bearer tok-two"})
    assert good.status_code == 200, good.text
    plain = httpx.post(f"{url}/invocations", content=PAYLOAD, headers={**JSON, "Authorization": "Bearer tok-two"})
    output = good.json()["outputs"][0]  # V2 data is flat, row-major, with its shape
    assert np.array(output["data"]).reshape(output["shape"]).tolist() == plain.json()["predictions"]
    # Metadata names the weights and dataset commits: guarded like /endpoints/{name}.
    assert httpx.get(f"{url}/v2/models/trusty").status_code == 401
    assert httpx.get(f"{url}/v2/models/trusty", headers={"Authorization": "Bearer tok-one"}).status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200, "probes stay open"
    client = triton_grpc.InferenceServerClient(grpc_address)
    try:
        with pytest.raises(InferenceServerException, match=r"StatusCode\.UNAUTHENTICATED"):
            client.get_model_metadata("trusty")
        assert client.get_model_metadata("trusty", headers={"authorization": "Bearer tok-one"}).name == "trusty"
        tensor = triton_grpc.InferInput("input", [1, 3], "FP64")
        tensor.set_data_from_numpy(np.array([[1.0, 1.0, 1.0]]))
        with pytest.raises(InferenceServerException, match=r"StatusCode\.UNAUTHENTICATED"):
            client.infer("trusty", [tensor])
        with pytest.raises(InferenceServerException, match=r"StatusCode\.PERMISSION_DENIED"):
            client.infer("trusty", [tensor], headers={"authorization": "Bearer x"})
        answer = client.infer("trusty", [tensor], headers={"authorization": "Bearer tok-one"})
        assert answer.get_response().model_name == "trusty"
    finally:
        client.close()


def test_prediction_tokens(trust_registry: Registry) -> None:
    env = trust_registry.gateway_env(LOCKGATE_API_TOKENS="tok-one, tok-two", LOCKGATE_ADMIN_TOKEN="adm")
    grpc_port = free_port()
    server = start_lockgate(
        trust_registry.workdir, env, "models:/trusty/1", "--name", "trusty", "--grpc-port", str(grpc_port),
        ready_path="/ready",
    )  # fmt: skip
    try:
        check_v2_tokens(server.url, f"127.0.0.1:{grpc_port}")
        missing = httpx.post(f"{server.url}/invocations", content=PAYLOAD, headers=JSON)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert set(missing.json()) == {"error_code", "message"} and missing.json()["error_code"] == "UNAUTHENTICATED"
        wrong = httpx.post(f"{server.url}/invocations", content=PAYLOAD, headers={**JSON, "Authorization": "Bearer x"})
        assert wrong.status_code == 403 and wrong.json()["error_code"] == "PERMISSION_DENIED"
        for token in ("tok-one", "tok-two", "adm"):
            ok = httpx.post(
                f"{server.url}/endpoints/trusty/invocations",
                content=PAYLOAD,
                headers={**JSON, "Authorization": f"Bearer {token}"},
            )
            assert ok.status_code == 200, (token, ok.text)
        for path in ("/endpoints", "/endpoints/trusty", "/endpoints/trusty/lineage", "/endpoints/trusty/example"):
            assert httpx.get(f"{server.url}{path}").status_code == 401, path
        for path in ("/ping", "/health", "/version", "/ready", "/metrics"):
            assert httpx.get(f"{server.url}{path}").status_code == 200, path
    finally:
        server.stop()
