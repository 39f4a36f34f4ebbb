"""Two gateway processes on one cache directory, under a byte bound that forces eviction: each
serves its own versions with no failed request, and neither evicts a version the other serves.
Real ``lockgate serve`` processes, a real sqlite registry and store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from lockgate.loader.cache_leases import CacheLeases
from tests.load_clients import hammer, in_background
from tests.registry_helpers import Registry, weights
from tests.servers import start_lockgate

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
PAYLOAD = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 1.0, 1.0]]}}).encode()
VERSION_BYTES = 2_100_000  # one version's files (its weights, the pickled model, MLmodel, ...)


@pytest.mark.slow
def test_two_gateways_never_evict_each_others_live_versions(registry: Registry) -> None:
    for seed in (1, 2, 3, 4):
        registry.log_weights_model("shared", weights(seed, rows=1024, cols=256))
    # Room for three versions and a little: a fourth forces an eviction.
    env = registry.gateway_env(LOCKGATE_CACHE_MAX_BYTES=str(int(VERSION_BYTES * 3.6)))
    first = start_lockgate(registry.workdir, env, "models:/shared/1", "--name", "one", ready_path="/ready")
    second = start_lockgate(registry.workdir, env, "models:/shared/2", "--name", "two", ready_path="/ready")
    try:
        for server in (first, second):  # start_lockgate returns on any answer of /ready, 503 too
            assert httpx.get(f"{server.url}/ready").status_code == 200, server.log()
        # A version nobody serves, fetched last (so the least recently used are the live ones).
        fetched = subprocess.run([LOCKGATE, "fetch", "models:/shared/4"], env={**os.environ, **env,
                                 "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                                 capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        stop = threading.Event()
        loads = [
            in_background(lambda url=url: hammer(url, PAYLOAD, clients=4, until=stop))
            for url in (f"{first.url}/endpoints/one/invocations", f"{second.url}/endpoints/two/invocations")
        ]
        try:
            # Version 3 needs room: the least recently used version, v1, is the first gateway's.
            answer = httpx.post(f"{second.url}/admin/endpoints", json={"name": "two", "model_uri": "models:/shared/3"},
                                timeout=300)  # fmt: skip
            assert answer.status_code == 200, answer.text
        finally:
            stop.set()
            for thread, _ in loads:
                thread.join(timeout=120)
        one, two = loads[0][1][0], loads[1][1][0]
        assert len(one) > 20 and len(two) > 20
        assert [a for a in one + two if a.status != 200] == []
        assert {a.version for a in one} == {"1"} and {a.version for a in two} <= {"2", "3"}
        held = {str(meta["weights_uri"]) for meta in _held(registry.workdir / "cache")}
        uris = {v: httpx.get(f"{server.url}/endpoints/{name}").json()["weights_uri"]
                for v, server, name in (("1", first, "one"), ("3", second, "two"))}  # fmt: skip
        assert uris["1"] in held, "the first gateway's live version was evicted by the second"
        assert uris["3"] in held and len(held) == 3, held  # v1, v2 (the rollback target), v3: v4 went
        print(f"\ntwo gateways, one cache: {len(one)} + {len(two)} requests, 0 failed; v4 evicted, v1 kept")
        after = httpx.post(f"{first.url}/endpoints/one/invocations", content=PAYLOAD,
                           headers={"Content-Type": "application/json"})  # fmt: skip
        assert after.status_code == 200 and after.headers["X-Lockgate-Model-Version"] == "1"
    finally:
        first.stop()
        second.stop()


def _held(cache: Path) -> list[dict[str, object]]:
    out = []
    for meta in (cache / "versions").glob("*/.lockgate-version.json"):
        out.append(json.loads(meta.read_text()))
    return out


def test_a_lease_of_a_dead_process_is_stale_and_a_live_one_holds(tmp_path: Path) -> None:
    ours, theirs = CacheLeases(tmp_path), CacheLeases(tmp_path)
    theirs.hold("k1")
    assert ours.held_elsewhere("k1") == [theirs.holder]
    theirs.release("k1")
    assert ours.held_elsewhere("k1") == []
    # A process that is gone: its pid no longer exists on this host.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    host = theirs.holder.split("~")[0]
    lease = tmp_path / "leases" / "k2" / f"{host}~{pid}~deadbeef"
    lease.parent.mkdir(parents=True)
    lease.touch()
    assert ours.held_elsewhere("k2") == [] and not lease.exists()
    # Another node's lease that was not refreshed within its lifetime: stale too.
    remote = tmp_path / "leases" / "k3" / "other-node~1~cafe"
    remote.parent.mkdir(parents=True)
    remote.touch()
    assert ours.held_elsewhere("k3") == ["other-node~1~cafe"]
    os.utime(remote, (0, 0))
    assert ours.held_elsewhere("k3") == []
