"""A flipped byte in a pack is caught, named, never served, and reported by verify."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lockgate.gateway.cli.main import app
from lockgate.store import Store
from lockgate.store.errors import CorruptChunkError
from lockgate.store.layout import pack_key


def _flip(store_dir: Path, pack_id: str, offset: int) -> None:
    path = store_dir / pack_key(pack_id)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_names_chunk_and_pack(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(str(root), create=True)
    victim = random.Random(1).randbytes(400_000)
    bystander = random.Random(2).randbytes(400_000)
    commit = store.commit_files("models", "main", [("victim.bin", victim), ("bystander.bin", bystander)]).commit_id
    bad = store.file_manifest(commit, "victim.bin").chunks[3]
    _flip(root, bad.pack_id, bad.offset + 100)

    fresh = Store.open(str(root))
    with pytest.raises(CorruptChunkError) as caught:
        fresh.read_file(commit, "victim.bin")
    assert bad.chunk_id in str(caught.value)
    assert bad.pack_id in str(caught.value)
    # Streaming stops before the damaged chunk's bytes: nothing unverified is yielded.
    pieces = []
    with pytest.raises(CorruptChunkError):
        for piece in fresh.stream_file(commit, "victim.bin", parallelism=1):
            pieces.append(piece)
    served = b"".join(pieces)
    damaged_at = sum(c.length for c in fresh.file_manifest(commit, "victim.bin").chunks[:3])
    assert victim.startswith(served)
    assert len(served) <= damaged_at
    # Ranges that avoid the damaged chunk still read; the other file is untouched.
    assert fresh.read_file(commit, "victim.bin", 0, 1000) == victim[:1000]
    assert fresh.read_file(commit, "bystander.bin") == bystander
    # A checkout never publishes the damaged file.
    with pytest.raises(CorruptChunkError):
        fresh.checkout(commit, "victim.bin", tmp_path / "out")
    assert not (tmp_path / "out" / "victim.bin").exists()

    result = CliRunner().invoke(app, ["store", "verify", "--store", str(root)])
    assert result.exit_code == 1
    assert bad.chunk_id in result.output
    assert "victim.bin" in result.output
    assert "bystander.bin" not in result.output


def test_verify_passes_on_a_healthy_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store.open(str(root), create=True).commit_files("models", "main", [("a", b"a" * 10_000)])
    result = CliRunner().invoke(app, ["store", "verify", "models", "--store", str(root)])
    assert result.exit_code == 0, result.output
    assert "everything verifies" in result.output


def test_corrupt_object_is_named(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(str(root), create=True)
    commit = store.commit_files("models", "main", [("a", b"a" * 10_000)]).commit_id
    manifest_id = store.stat(commit, "a").manifest_id
    obj = root / "objects" / manifest_id[:2] / manifest_id
    obj.write_bytes(obj.read_bytes()[:-3] + b"xyz")
    result = CliRunner().invoke(app, ["store", "verify", "--store", str(root)])
    assert result.exit_code == 1
    assert manifest_id in result.output
