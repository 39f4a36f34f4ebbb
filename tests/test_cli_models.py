"""``lockgate resolve / fetch / import`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.registry_helpers import Registry, weights

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
# The test models pickle classes from tests/, so the CLI runs from the repository root.
ROOT_DIR = Path(__file__).resolve().parents[1]


def run(args: list[str], registry: Registry, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "LOCKGATE_STORE": str(registry.store_root),
        "LOCKGATE_CACHE_DIR": str(registry.workdir / "cache"),
        "PYTHONPATH": str(ROOT_DIR),
    }
    proc = subprocess.run(
        [LOCKGATE, *args], capture_output=True, text=True, env=env, timeout=180, check=False, cwd=ROOT_DIR
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_fetch_twice_fetches_nothing_the_second_time(registry: Registry) -> None:
    version, run_id = registry.log_weights_model("cli", weights(60))
    registry.client.set_registered_model_alias("cli", "champion", version)
    first = json.loads(run(["fetch", "models:/cli@champion", "--json"], registry).stdout)
    assert first["load"]["bytes_fetched"] == first["load"]["bytes_total"] > 0
    assert first["resolved"]["run_id"] == run_id and first["resolved"]["weights_commit"]
    second = json.loads(run(["fetch", "models:/cli/1", "--json"], registry).stdout)
    assert second["load"]["bytes_fetched"] == 0 and second["load"]["cached"]
    text = run(["resolve", "models:/cli@champion"], registry).stdout
    assert first["resolved"]["weights_commit"][:40] in text.replace("\n", "").replace(" ", "")


def test_unknown_model_is_one_clear_line(registry: Registry) -> None:
    registry.log_weights_model("known", weights(61))
    proc = run(["resolve", "models:/unknown@prod"], registry, ok=False)
    assert proc.returncode == 1
    assert "no registered model 'unknown'" in proc.stderr and "known" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = run(["fetch", "models:/known/champion"], registry, ok=False)
    assert bad.returncode == 1 and "models:/known@champion" in bad.stderr
