"""Fuzzing lockgate's whole OpenAPI surface with schemathesis against a real uvicorn (``lockgate
serve``) with a deployed model: whatever the generated request, the answer is never a 5xx.

The quick run is bounded in examples per operation and in time; the long run (more examples)
is marked ``slow`` and still runs in CI."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.registry_helpers import registry_at, weights
from tests.servers import Server, start_lockgate


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("fuzz")
    with registry_at(workdir) as registry:
        registry.log_weights_model("fuzzy", weights(3, rows=64, cols=4))
        registry.log_weights_model("fuzzy", weights(4, rows=64, cols=4))
    server = start_lockgate(workdir, registry.gateway_env(), "models:/fuzzy/1", "--name", "fuzzy", ready_path="/ready")
    yield server
    server.stop()


def fuzz(server: Server, examples: int, budget_seconds: float) -> int:
    """Fuzz every operation with ``examples`` generated requests (positive and negative data),
    within ``budget_seconds`` in all. Returns the number of requests sent; fails on any 5xx."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    deadline = time.monotonic() + budget_seconds
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def check(case: schemathesis.Case) -> None:
            nonlocal sent
            if time.monotonic() > deadline:
                return  # out of time: the remaining examples are skipped, the run stays bounded
            response = case.call(base_url=server.url, timeout=60)
            sent += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        check()
    assert not failures, "\n".join(failures[:10])
    return sent


def test_fuzz_quick_no_server_errors(fuzz_gateway: Server) -> None:
    assert fuzz(fuzz_gateway, examples=20, budget_seconds=120) > 100


@pytest.mark.slow
def test_fuzz_long_no_server_errors(fuzz_gateway: Server) -> None:
    assert fuzz(fuzz_gateway, examples=200, budget_seconds=300) > 1000


def test_the_gateway_still_serves_after_the_fuzz(fuzz_gateway: Server) -> None:
    body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}
    answer = httpx.post(f"{fuzz_gateway.url}/endpoints/fuzzy/invocations", json=body)
    assert answer.status_code == 200 and "predictions" in answer.json()
