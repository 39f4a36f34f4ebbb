"""Delta fetch, the bounded cache, concurrency, crash recovery and integrity, end to end
through a real sqlite registry and the lockgate store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate.loader.cache import ModelCache
from lockgate.loader.errors import ArtifactIntegrityError, CacheFullError, StoreUnavailableError
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from lockgate.store.layout import pack_key
from tests.registry_helpers import Registry, edit_rows, weights

ROOT_DIR = Path(__file__).resolve().parents[1]
EXAMPLE = pd.DataFrame(np.ones((2, 3)), columns=["a", "b", "c"])


def make_loader(registry: Registry, cache_dir: Path, max_bytes: int | None = None) -> ModelLoader:
    resolver = Resolver(open_configured_store, tracking_uri=registry.tracking_uri)
    return ModelLoader(resolver, ModelCache(cache_dir, max_bytes), open_configured_store)


def test_delta_fetch_and_zero_byte_reload(registry: Registry, tmp_path: Path) -> None:
    base = weights(10, rows=8192)  # 8 MiB of float32
    registry.log_weights_model("delta", base)
    edited = edit_rows(base, 0.10, seed=11)
    registry.log_weights_model("delta", edited)
    loader = make_loader(registry, tmp_path / "cache")

    first = loader.resolve_and_load("models:/delta/1")
    assert first.report.fetch.bytes_fetched == first.report.fetch.bytes_total
    second = loader.resolve_and_load("models:/delta/2")
    fetch = second.report.fetch
    share = fetch.bytes_fetched / fetch.bytes_total
    print(f"\nv2: fetched {fetch.bytes_fetched} of {fetch.bytes_total} ({share:.1%}), reused {fetch.bytes_reused}")
    assert fetch.bytes_fetched <= 0.15 * fetch.bytes_total
    assert fetch.bytes_fetched + fetch.bytes_reused == fetch.bytes_total
    again = loader.resolve_and_load("models:/delta/1")
    assert again.report.fetch.bytes_fetched == 0 and again.report.fetch.cached
    # Each version was assembled from the right bytes.
    assert np.array_equal(first.model.native.unwrap_python_model().weights, base)
    assert np.array_equal(second.model.native.unwrap_python_model().weights, edited)


def test_cache_bound_and_pins(registry: Registry, tmp_path: Path) -> None:
    for seed in range(5):
        registry.log_weights_model("bounded", weights(100 + seed))
    probe = make_loader(registry, tmp_path / "probe").resolve_and_load("models:/bounded/1")
    size = probe.report.fetch.bytes_total
    bound = int(size * 2.5)
    loader = make_loader(registry, tmp_path / "cache", max_bytes=bound)
    pinned = loader.resolve_and_load("models:/bounded/1")
    loader.cache.pin(pinned.resolved.weights.cache_key)
    for version in range(2, 6):
        loader.resolve_and_load(f"models:/bounded/{version}")
        assert loader.cache.used_bytes() <= bound
        assert loader.cache.is_complete(pinned.resolved.weights.cache_key), "a pinned version was evicted"
    assert len(loader.cache.held()) == 2
    # With two pinned versions there is no room for a third: a clear error, nothing evicted.
    loader.cache.pin(loader.resolve("models:/bounded/5").weights.cache_key)
    with pytest.raises(CacheFullError, match="held by versions this process pins"):
        loader.resolve_and_load("models:/bounded/3")


def test_two_processes_load_one_version(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("shared", weights(20, rows=8192))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "tests.workers", "load-model", str(cache), registry.tracking_uri, "models:/shared/1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sorted(r["cached"] for r in reports) == [False, True], "exactly one process fetched"
    held = ModelCache(cache).held()
    assert len(held) == 1
    assert not list((cache / "partial").iterdir())


@pytest.mark.slow
def test_sigkill_during_fetch_then_resume(registry: Registry, tmp_path: Path) -> None:
    registry.log_weights_model("crashy", weights(30, rows=16384))  # 16 MiB
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "tests.workers", "load-model", str(cache), registry.tracking_uri, "models:/crashy/1"]
    died = subprocess.run([*cmd, "0.5"], cwd=ROOT_DIR, capture_output=True, timeout=300, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    assert not ModelCache(cache).held(), "a half-fetched version must never look complete"
    assert list((cache / "partial").iterdir()), "the partial download is kept for resuming"

    loader = make_loader(registry, cache)
    servable = loader.resolve_and_load("models:/crashy/1")
    fetch = servable.report.fetch
    assert fetch.bytes_reused > 0, "the resumed load reuses what the killed one wrote"
    assert fetch.bytes_fetched < fetch.bytes_total
    assert servable.model.predict(EXAMPLE).shape == (2, 1)


def test_corrupt_chunk_fails_load_but_cached_versions_still_load(registry: Registry, tmp_path: Path) -> None:
    base = weights(40, rows=8192)
    registry.log_weights_model("corrupt", base)
    registry.log_weights_model("corrupt", edit_rows(base, 0.2, seed=41))
    loader = make_loader(registry, tmp_path / "cache")
    loader.resolve_and_load("models:/corrupt/1")

    store = Store.open(str(registry.store_root))
    v1 = loader.resolve("models:/corrupt/1")
    v2 = loader.resolve("models:/corrupt/2")
    v1_files = store.list_files(str(v1.weights_commit), v1.weights.path).values()
    held = {ref.chunk_id for e in v1_files for ref in store.manifest(e.manifest_id).chunks}
    victim = next(
        ref
        for e in store.list_files(str(v2.weights_commit), v2.weights.path).values()
        for ref in store.manifest(e.manifest_id).chunks
        if ref.chunk_id not in held
    )
    pack = registry.store_root / pack_key(victim.pack_id)
    data = bytearray(pack.read_bytes())
    data[victim.offset + 10] ^= 0xFF
    pack.write_bytes(bytes(data))

    with pytest.raises(ArtifactIntegrityError, match=victim.chunk_id):
        loader.load(v2)
    assert not loader.cache.is_complete(v2.weights.cache_key)
    again = loader.resolve_and_load("models:/corrupt/1")
    assert again.report.fetch.cached


def test_cached_version_loads_while_store_is_down(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.log_weights_model("offline", weights(50))
    registry.log_weights_model("offline", weights(51))
    cache = tmp_path / "cache"
    make_loader(registry, cache).resolve_and_load("models:/offline/1")

    monkeypatch.setenv("LOCKGATE_STORE", str(tmp_path / "store-is-gone"))
    loader = make_loader(registry, cache)
    servable = loader.resolve_and_load("models:/offline/1")
    assert servable.report.fetch.cached and servable.report.fetch.bytes_fetched == 0
    with pytest.raises(StoreUnavailableError, match="store-is-gone"):
        loader.resolve_and_load("models:/offline/2")
