"""How much branch history garbage collection keeps, and where it cut history off.

The default keeps every ancestor of every ref. With a policy, each branch head, tag and
ledger-named commit keeps itself and the ancestors the policy names: the newest ``keep_last``
commits behind it (counting itself) or those made since ``keep_since``. A commit that meets
either rule is kept.

Commit ids are content hashes of their parents too, so a kept commit can not be rewritten to
drop a parent: it would become another commit and every pin on it would break. So, like a
shallow git clone, the store records the *cut* instead (``history-cuts.json``: kept commit ->
the parents dropped behind it). History walks, ``verify`` and later collections read a missing
parent that is recorded there as the end of the kept history, not as damage. A missing parent
that is not recorded is still damage.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from lockgate.store.backends.base import Backend
from lockgate.store.errors import ObjectNotFoundError
from lockgate.store.ids import is_full_id
from lockgate.store.layout import HISTORY_CUTS_KEY
from lockgate.store.objects import utc_now_iso


@dataclass(frozen=True)
class HistoryRetention:
    keep_last: int | None = None  # commits behind each ref, the ref's own commit included
    keep_since: float | None = None  # unix time: commits made at or after it are kept

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise ValueError(f"keep_last must be at least 1 (the ref's own commit), not {self.keep_last}")

    @property
    def keeps_all(self) -> bool:
        return self.keep_last is None and self.keep_since is None

    def keeps(self, depth: int, commit_time: float) -> bool:
        """Whether a commit ``depth`` steps behind a ref (0: the ref's own) is kept."""
        if depth == 0 or self.keeps_all:
            return True
        if self.keep_last is not None and depth < self.keep_last:
            return True
        return self.keep_since is not None and commit_time >= self.keep_since


KEEP_ALL = HistoryRetention()


def read_cuts(backend: Backend) -> dict[str, frozenset[str]]:
    """Kept commit -> the parents a collection dropped behind it."""
    try:
        data = orjson.loads(backend.get(HISTORY_CUTS_KEY))
    except ObjectNotFoundError:
        return {}
    except orjson.JSONDecodeError:
        return {}  # unreadable: every missing parent is damage again, the safe reading
    cuts = data.get("cuts") if isinstance(data, dict) else None
    if not isinstance(cuts, dict):
        return {}
    # Store contents are checked at the boundary: only full commit ids count as a cut.
    return {
        commit: frozenset(p for p in parents if isinstance(p, str) and is_full_id(p))
        for commit, parents in cuts.items()
        if isinstance(commit, str) and is_full_id(commit) and isinstance(parents, list)
    }


def record_cuts(backend: Backend, new: dict[str, set[str]]) -> None:
    """Add cuts to the record, before anything they name is deleted. Only the collector writes
    it, under the collector lease, so a read-modify-write is safe."""
    merged: dict[str, set[str]] = {commit: set(parents) for commit, parents in read_cuts(backend).items()}
    for commit, parents in new.items():
        merged.setdefault(commit, set()).update(parents)
    body = {"cuts": {c: sorted(p) for c, p in sorted(merged.items())}, "time": utc_now_iso()}
    backend.put(HISTORY_CUTS_KEY, orjson.dumps(body))


def is_cut(backend: Backend, commit_id: str, parent_id: str) -> bool:
    return parent_id in read_cuts(backend).get(commit_id, frozenset())
