"""A full disk is a clear error that loses nothing: for the store and for the model cache.

A real 2 MiB tmpfs is mounted for each test (the suite runs as root here, as in CI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.loader.cache import ModelCache
from lockgate.loader.errors import DiskFullError
from lockgate.loader.model_loader import ModelLoader
from lockgate.loader.registry import Resolver
from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store
from lockgate.store.errors import StoreFullError
from tests.registry_helpers import Registry, weights


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_store_on_a_full_disk(tiny_disk: Path) -> None:
    store = Store.open(str(tiny_disk / "store"), create=True)
    before = store.commit_files("models", "main", [("small.bin", b"fits")]).commit_id
    with pytest.raises(StoreFullError, match="is full"):
        store.commit_files("models", "main", [("big.bin", os.urandom(3 * 1024 * 1024))])
    assert store.resolve("models", "main") == before, "the branch did not move"
    assert store.read_file(before, "small.bin") == b"fits"
    assert not list((tiny_disk / "store" / ".tmp").iterdir()), "no temporary files left behind"


def test_cache_on_a_full_disk(registry: Registry, tiny_disk: Path) -> None:
    registry.log_weights_model("huge", weights(70, rows=4096))  # 4 MiB: more than the disk
    loader = ModelLoader(
        Resolver(open_configured_store, tracking_uri=registry.tracking_uri),
        ModelCache(tiny_disk / "cache"),
        open_configured_store,
    )
    with pytest.raises(DiskFullError, match="is full"):
        loader.resolve_and_load("models:/huge/1")
    assert not ModelCache(tiny_disk / "cache").held(), "nothing half-written is published"
