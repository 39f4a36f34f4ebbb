"""The pure parts of traffic policies: the route-key hash, the shadow comparison, the policy a
ledger names at a moment, and the policy fields of the config file and the admin API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from lockgate.gateway.control.config_file import read_config
from lockgate.gateway.control.ledger import Ledger, LedgerEvent, VersionRef
from lockgate.gateway.control.traffic_policy import KEEP, CanarySpec, ShadowSpec
from lockgate.gateway.errors import ConfigError, InvalidPolicyError
from lockgate.gateway.routes.admin_routes import DeployRequest
from lockgate.gateway.serving.routing import route_point
from lockgate.gateway.serving.shadow import ShadowCopy, ShadowMirror
from lockgate.monitoring.errors import ShadowMismatchError
from lockgate.monitoring.shadow_comparison import compare
from lockgate.monitoring.shadow_metrics import ShadowMetrics
from lockgate.store import Store


def test_route_points_are_stable_uniform_and_per_endpoint() -> None:
    keys = [f"customer-{i}" for i in range(20_000)]
    points = np.array([route_point("fraud", k) for k in keys])
    assert ((points >= 0) & (points < 100)).all()
    assert [route_point("fraud", k) for k in keys[:50]] == points[:50].tolist()  # stable
    for percent in (1, 10, 50, 90):
        assert abs((points < percent).mean() * 100 - percent) < 1.0
    other = np.array([route_point("churn", k) for k in keys])
    # Independent per endpoint: the 10 % of one is not the 10 % of the other.
    overlap = ((points < 10) & (other < 10)).mean()
    assert overlap == pytest.approx(0.01, abs=0.004)


def test_compare_labels_values_and_shapes() -> None:
    labels = compare(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    assert labels.labels and labels.rows == 4 and labels.disagreeing_rows == 1
    strings = compare(["cat", "dog"], ["cat", "cow"])
    assert strings.labels and strings.disagreeing_rows == 1
    values = compare(np.array([1.0, 2.0, 0.0, np.nan]), np.array([1.0, 2.2, 0.0, np.nan]))
    assert not values.labels
    assert values.relative_differences.tolist() == pytest.approx([0.0, 0.1, 0.0, 0.0])
    one_nan = compare(np.array([1.0]), np.array([np.nan]))
    assert one_nan.relative_differences.tolist() == [np.inf]
    # Float labels of a classifier: told, not guessed.
    forced = compare(np.array([0.0, 1.0]), np.array([1.0, 1.0]), labels=True)
    assert forced.labels and forced.disagreeing_rows == 1
    rows = compare(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.0], [3.0, 8.0]]))
    assert rows.relative_differences.tolist() == [0.0, 1.0]
    with pytest.raises(ShadowMismatchError, match="shape"):
        compare(np.zeros(3), np.zeros(4))


def _ref(version: str) -> VersionRef:
    return VersionRef(version, f"w{version}", f"d{version}", None, f"models:/m/{version}")


def test_policy_at_folds_roles_promote_and_abort(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"), create=True)
    ledger = Ledger(lambda: store)
    marks: list[datetime] = []

    def step(action: str, to: VersionRef | None, role: str = "primary", percent: float | None = None) -> None:
        ledger.record("fraud", action, "test", to, None, role=role, percent=percent)
        marks.append(datetime.now(UTC) + timedelta(microseconds=1))

    step("deploy", _ref("1"))
    step("deploy", _ref("2"), "canary", 10)
    step("deploy", _ref("3"), "shadow")
    step("update", _ref("2"), "canary", 25)
    step("promote", _ref("2"))
    step("abort", None, "shadow")
    policies = [ledger.policy_at("fraud", moment) for moment in marks]
    assert [p.primary.to.version if p.primary and p.primary.to else None for p in policies] == [
        "1", "1", "1", "1", "2", "2"]  # fmt: skip
    assert [p.canary.percent if p.canary else None for p in policies] == [None, 10, 10, 25, None, None]
    assert [bool(p.shadow) for p in policies] == [False, False, True, True, True, False]
    shares = policies[3].as_dict()
    assert shares["primary"]["share"] == 75.0 and shares["canary"]["share"] == 25.0 and shares["shadow"]["share"] == 0
    assert policies[4].as_dict()["primary"]["share"] == 100.0
    assert ledger.serving_at("fraud", marks[4]).action == "promote"  # type: ignore[union-attr]
    # Events written before traffic policies have no role: they are the primary's.
    old = LedgerEvent.from_dict({"endpoint": "x", "action": "deploy", "actor": "a", "time": "t", "to": None})
    assert old.role == "primary" and old.percent is None


def test_config_file_policy_fields(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n  - name: fraud\n    model_uri: models:/fraud@champion\n"
        "    canary: {model_uri: models:/fraud@challenger, percent: 2.5}\n"
        "    shadow: {model_uri: models:/fraud/9}\n"
        "  - model_uri: models:/churn/1\n    canary: {model_uri: models:/churn/2, percent: 0}\n"
    )
    fraud, churn = read_config(path)
    assert fraud.canary == CanarySpec("models:/fraud@challenger", 2.5) and fraud.shadow == ShadowSpec("models:/fraud/9")
    assert churn.canary is None  # percent 0: no canary
    for bad, named in (
        ("canary: {model_uri: models:/x/2, percent: 101}", "percent must be a number from 0 to 100"),
        ("canary: {model_uri: models:/x/2}", "needs exactly 'model_uri' and 'percent'"),
        ("canary: {model_uri: models:/x/2, percent: lots}", "endpoints[0]"),
        ("shadow: models:/x/2", "shadow needs exactly 'model_uri'"),
    ):
        path.write_text(f"endpoints:\n  - model_uri: models:/x/1\n    {bad}\n")
        with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
            read_config(path)


def test_admin_policy_fields_keep_set_and_drop() -> None:
    def policy(body: dict[str, object], current: str | None = None) -> tuple[object, object]:
        return DeployRequest.model_validate({"name": "fraud", **body}).policy(current)

    assert policy({}) == (KEEP, KEEP)
    assert policy({"canary": {"model_uri": "models:/f/2", "percent": 5}}) == (CanarySpec("models:/f/2", 5), KEEP)
    assert policy({"canary": {"percent": 30}}, current="models:/f@c") == (CanarySpec("models:/f@c", 30), KEEP)
    assert policy({"canary": {"percent": 0}}) == (None, None)  # an abort
    assert policy({"canary": None, "shadow": {"model_uri": "models:/f/3"}}) == (None, ShadowSpec("models:/f/3"))
    assert policy({"shadow": None}) == (KEEP, None)
    with pytest.raises(InvalidPolicyError, match=r"canary\.model_uri is required"):
        policy({"canary": {"percent": 5}})
    for percent in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percent"):
            policy({"canary": {"model_uri": "models:/f/2", "percent": percent}})


def _stub_shadow() -> Any:
    """Just what the mirror reads of a deployment (the real ones are in test_traffic_policy)."""
    resolved = SimpleNamespace(flavors=("python_function",))
    # The flavors the loader loaded from (all of them, unless safe load passed some over).
    model = SimpleNamespace(metadata=SimpleNamespace(flavors={"python_function": {}}))
    live = SimpleNamespace(inflight=0, closed=False)
    servable = SimpleNamespace(resolved=resolved, model=model)
    return SimpleNamespace(live=live, closed=False, version_label="7", servable=servable)


def test_the_shadow_queue_drops_past_its_bounds_and_never_blocks() -> None:
    registry = CollectorRegistry()
    shadow = _stub_shadow()
    release = asyncio.Event()

    async def scenario() -> None:
        mirror = ShadowMirror(lambda name: shadow, ShadowMetrics(registry), queue_size=3, timeout=5,
                              queue_bytes=1000)  # fmt: skip

        async def slow(deployment: Any) -> Any:
            await release.wait()
            return np.array([1, 0])

        async def fails(deployment: Any) -> Any:
            raise RuntimeError("boom")

        mirror.offer("e", ShadowCopy(slow, lambda: np.array([1, 1]), 10))  # taken by the worker at once
        await asyncio.sleep(0.01)
        for _ in range(5):  # 3 wait, 2 are dropped: the queue holds 3
            mirror.offer("e", ShadowCopy(fails, lambda: np.array([1]), 10))
        mirror.offer("e", ShadowCopy(fails, lambda: np.array([1]), 5000))  # too many bytes: dropped
        assert registry.get_sample_value("lockgate_shadow_dropped_total", {"endpoint": "e"}) == 3
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if registry.get_sample_value("lockgate_shadow_requests_total",
                                         {"endpoint": "e", "version": "7", "outcome": "error"}) == 3:  # fmt: skip
                break
        labels = {"endpoint": "e", "version": "7"}
        assert registry.get_sample_value("lockgate_shadow_requests_total", {**labels, "outcome": "ok"}) == 1
        assert registry.get_sample_value("lockgate_shadow_requests_total", {**labels, "outcome": "error"}) == 3
        assert registry.get_sample_value("lockgate_shadow_disagreement_ratio", labels) == 0.5
        assert shadow.live.inflight == 0
        await mirror.close()

    asyncio.run(scenario())
