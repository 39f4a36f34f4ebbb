"""What `lockgate serve` does for its start-to-ready time, held to what it must not break."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.gateway.app import create_app
from lockgate.gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_collector_is_on_again_once_the_gateway_has_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lockgate serve` turns the collector off for its imports and first loads; the app's
    startup must turn it back on, or a long-running gateway would never collect a cycle."""
    # create_app exports the store root to this process's environment (MLflow's plugins read it
    # there): monkeypatch restores it, or every later test in this worker would inherit this store.
    monkeypatch.setenv("LOCKGATE_STORE", str(tmp_path / "store"))
    settings = Settings(
        store=str(tmp_path / "store"),
        cache_dir=str(tmp_path / "cache"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    app = create_app(settings)

    async def start_and_stop() -> bool:
        async with app.router.lifespan_context(app):
            return gc.isenabled()

    gc.disable()
    try:
        assert asyncio.run(start_and_stop()), "the collector stayed off after the startup"
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_local_store_never_imports_boto3() -> None:
    """boto3 costs ~0.3 s of every start: only an s3:// store may pay it."""
    probe = "import sys, gateway.app, gateway.cli.main; print('boto3' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "importing the gateway imported boto3"


def test_the_serving_path_imports_neither_sklearn_nor_httpx() -> None:
    """sklearn (0.45 s with scipy.stats) loads only with a native model, which a graph-first
    restart defers until after ready; httpx (45 ms) only for the CLI's client commands."""
    probe = "import sys, gateway.app, gateway.cli.main; print(sorted({'sklearn', 'httpx'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"importing the gateway imported {result.stdout.strip()}"
