"""What changed between two trees (or two subtrees)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lockgate.store.objects import Tree, TreeEntry

Status = Literal["added", "removed", "modified"]


@dataclass(frozen=True)
class Change:
    path: str
    status: Status
    old_size: int | None
    new_size: int | None


def subtree(tree: Tree, prefix: str) -> dict[str, TreeEntry]:
    """Entries under ``prefix``, keyed by their path relative to it. A prefix that names a
    file gives that single file under its own base name."""
    if not prefix:
        return dict(tree.entries)
    if prefix in tree.entries:
        return {prefix.rsplit("/", 1)[-1]: tree.entries[prefix]}
    base = prefix + "/"
    return {p[len(base) :]: e for p, e in tree.entries.items() if p.startswith(base)}


def diff_entries(old: dict[str, TreeEntry], new: dict[str, TreeEntry]) -> list[Change]:
    changes = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a is None and b is not None:
            changes.append(Change(path, "added", None, b.size))
        elif b is None and a is not None:
            changes.append(Change(path, "removed", a.size, None))
        elif a is not None and b is not None and a.manifest_id != b.manifest_id:
            changes.append(Change(path, "modified", a.size, b.size))
    return changes
