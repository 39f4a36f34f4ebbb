"""Crafting store contents as an attacker with write access to the bucket would: objects written
straight to the backend, bypassing every check lockgate's own writer makes."""

from __future__ import annotations

import orjson
import zstandard

from lockgate.store import Store
from lockgate.store.ids import object_id
from lockgate.store.layout import object_key
from lockgate.store.objects import Commit, utc_now_iso


def write_raw_tree(store: Store, entries: dict[str, tuple[str, int]]) -> str:
    """A tree object with exactly these entries, hashed and stored as lockgate would store it."""
    payload = orjson.dumps({"entries": {p: [m, s] for p, (m, s) in entries.items()}}, option=orjson.OPT_SORT_KEYS)
    oid = object_id("tree", payload)
    store.backend.put(object_key(oid), b"tree\n" + zstandard.ZstdCompressor().compress(payload))
    return oid


def craft_branch(store: Store, repo: str, paths: dict[str, bytes], branch: str = "main") -> str:
    """Move ``repo@branch`` to a commit whose tree maps each crafted path to real, verified file
    bytes (so only the paths are hostile). Returns the commit id."""
    pushed = store.commit_files(repo, branch, [(f"legit/{i}", data) for i, data in enumerate(paths.values())])
    legit = store.tree(pushed.commit_id).entries
    entries = {path: (legit[f"legit/{i}"].manifest_id, len(data)) for i, (path, data) in enumerate(paths.items())}
    tree_id = write_raw_tree(store, entries)
    commit_id = store.objects.put(
        Commit(tree=tree_id, parents=(pushed.commit_id,), author="attacker", message="crafted", time=utc_now_iso())
    )
    head = store.refs.read_branch(repo, branch)
    assert head is not None and store.refs.swap_branch(repo, branch, commit_id, head[1])
    return commit_id
