"""The ledger cannot be silenced by one bad event, its writes stay off the event loop, and the CLI
answers every bad argument in one line instead of a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.control.ledger import Ledger, VersionRef
from lockgate.gateway.settings import Settings
from lockgate.gateway.wiring import build_loader, store_opener
from lockgate.store import Store
from tests.registry_helpers import Registry, weights

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
V1 = VersionRef("1", "a" * 64, None, "lockgate://models@x/model")


def test_an_unwritable_event_is_set_aside_and_the_rest_are_written(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ledger = Ledger(store_opener(Settings(store=str(root)), create=True))
    # Endpoint names are validated before they get here; this event is what a name that
    # slipped through (or any other unwritable event) looks like to the ledger.
    ledger.record("../escape", "deploy", "test", V1)
    assert ledger.pending == 0, "the bad event is stuck in memory and would hold back every other one"
    assert ledger.rejected_total == 1 and "segment" in ledger.rejected[0][1]
    ledger.record("good", "deploy", "test", V1)
    assert ledger.pending == 0 and ledger.rejected_total == 1
    store = Store.open(root)
    files = store.list_files(store.resolve("lockgate-ledger", "main"), "events")
    assert [p.split("/")[1] for p in files] == ["good"]
    assert [e.endpoint for e in ledger.events()] == ["good"]


def test_an_outage_keeps_events_pending_not_rejected(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store.open(root, create=True).close()
    ledger = Ledger(store_opener(Settings(store=str(tmp_path / "gone")), create=False))
    ledger.record("good", "deploy", "test", V1)
    assert ledger.pending == 1 and ledger.rejected_total == 0


class ThreadRecordingLedger(Ledger):
    """The real ledger, noting which thread each append runs on."""

    threads: list[threading.Thread]

    def record(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        self.threads.append(threading.current_thread())
        return super().record(*args, **kwargs)  # type: ignore[arg-type]


def test_the_deployers_ledger_writes_run_off_the_event_loop(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("offloop", weights(1, rows=64, cols=4))
    registry.log_weights_model("offloop", weights(2, rows=64, cols=4))
    settings = Settings(
        store=str(registry.store_root), cache_dir=str(tmp_path / "cache"), tracking_uri=registry.tracking_uri
    )
    ledger = ThreadRecordingLedger(store_opener(settings, create=True))
    ledger.threads = []
    deployer = Deployer(build_loader(settings), ledger)

    async def scenario() -> threading.Thread:
        await deployer.deploy("offloop", "models:/offloop/1")
        await deployer.deploy("offloop", "models:/offloop/2")
        await deployer.rollback("offloop")
        await deployer.undeploy("offloop")
        return threading.current_thread()

    loop_thread = asyncio.run(scenario())
    assert len(ledger.threads) == 4
    assert all(t is not loop_thread for t in ledger.threads), "a ledger commit ran on the event loop"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_STORE"}
    return subprocess.run([LOCKGATE, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


@pytest.mark.parametrize(
    "args",
    [
        ("store", "cat", "lockgate://r@main/f", "--offset", "-5"),
        ("store", "cat", "lockgate://r@main/f", "--offset", "99999999999999999999"),
        ("store", "cat", "lockgate://r@main/f", "--length", "-1"),
        ("store", "log", "lockgate://r@main", "--at", "99999999999999999999"),
        ("store", "log", "lockgate://r@main", "--at", "99999999999 weeks ago"),
        ("store", "ls", "lockgate://r@main", "--at", "not a time"),
    ],
)
def test_cli_edge_cases_are_one_line_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert cli("store", "push", "f", "lockgate://r@main/f", cwd=tmp_path).returncode == 0
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_at_now_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert cli("store", "push", "f", "lockgate://r@main/f", cwd=tmp_path).returncode == 0
    proc = cli("store", "log", "lockgate://r@main", "--at", "now", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
