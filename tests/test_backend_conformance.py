"""The backend contract, checked the same way on a directory, in memory and on SeaweedFS."""

from __future__ import annotations

import pytest

from lockgate.store import Store
from lockgate.store.errors import ObjectNotFoundError, TagExistsError


def test_put_get_range_list(store: Store) -> None:
    backend = store.backend
    backend.put("t/a/1", b"hello world")
    backend.put("t/a/2", b"")
    backend.put("t/b/1", b"x")
    assert backend.get("t/a/1") == b"hello world"
    assert backend.get("t/a/2") == b""
    assert backend.get_range("t/a/1", 6, 5) == b"world"
    assert backend.get_range("t/a/1", 6, 100) == b"world"
    assert backend.size("t/a/1") == 11
    assert backend.exists("t/a/1")
    assert not backend.exists("t/a/3")
    assert sorted(backend.list("t/a/")) == ["t/a/1", "t/a/2"]
    assert sorted(backend.list("t/")) == ["t/a/1", "t/a/2", "t/b/1"]
    with pytest.raises(ObjectNotFoundError, match="t/missing"):
        backend.get("t/missing")
    with pytest.raises(ObjectNotFoundError):
        backend.get_range("t/missing", 0, 1)


def test_ref_compare_and_swap(store: Store) -> None:
    backend = store.backend
    assert backend.read_ref("r/main") is None
    assert backend.swap_ref("r/main", b"c1", None)
    assert not backend.swap_ref("r/main", b"c1-again", None), "create-only must fail when the ref exists"
    value, version = backend.read_ref("r/main") or (b"", "")
    assert value == b"c1"
    assert backend.swap_ref("r/main", b"c2", version)
    assert not backend.swap_ref("r/main", b"c3", version), "a stale version must lose"
    assert backend.read_ref("r/main") is not None
    assert (backend.read_ref("r/main") or (b"",))[0] == b"c2"


def test_tags_cannot_move(store: Store) -> None:
    a = store.commit_files("models", "main", [("a", b"1")]).commit_id
    store.commit_files("models", "main", [("a", b"2")])
    store.tag("models", "release", a)
    with pytest.raises(TagExistsError, match="release"):
        store.tag("models", "release", "main")
    assert store.resolve("models", "release") == a
