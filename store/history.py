"""Resolving refs to commits, walking history, and time travel.

History is linear per branch: a writer that loses a compare-and-swap rebases its change onto
the new head, so every commit has at most one parent and first-parent order is time order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

from lockgate.store.backends.base import Backend
from lockgate.store.errors import CorruptObjectError, EmptyRepoError, ObjectNotFoundError, RefNotFoundError
from lockgate.store.history_retention import is_cut
from lockgate.store.ids import is_full_id
from lockgate.store.object_store import ObjectStore
from lockgate.store.objects import Commit, format_time
from lockgate.store.refs import RefStore
from lockgate.store.uri import RefSpec, parse_ref

# A commit may be named by any unique prefix of at least 8 hex characters, as in git.
_SHORT_ID = re.compile(r"[0-9a-f]{8,63}")


class History:
    def __init__(self, refs: RefStore, objects: ObjectStore, backend: Backend | None = None) -> None:
        self._refs = refs
        self._objects = objects
        self._backend = backend  # where gc's history cuts are recorded (store.history_retention)

    def _parent_commit(self, child: str, parent: str) -> Commit | None:
        """``parent`` of ``child``; None where a collection with a retention policy dropped it
        (recorded, so the end of the kept history, not damage). Only a missing parent costs a
        read of the record."""
        try:
            return self._objects.commit(parent)
        except ObjectNotFoundError:
            if self._backend is not None and is_cut(self._backend, child, parent):
                return None
            raise

    def resolve(self, repo: str, ref: RefSpec | str, at: datetime | None = None) -> str:
        """Return the full commit id ``ref`` names in ``repo`` (as it was at time ``at``)."""
        spec = ref if isinstance(ref, RefSpec) else parse_ref(ref)
        self._refs.require_repo(repo)
        commit_id = self._named(repo, spec.name)
        for step in range(spec.back):
            parents = self._objects.commit(commit_id).parents
            if not parents:
                raise RefNotFoundError(
                    f"{spec} in {repo!r} goes back past the first commit (only {step} commits before it)"
                )
            if self._parent_commit(commit_id, parents[0]) is None:
                raise RefNotFoundError(
                    f"{spec} in {repo!r} goes back past the first kept commit (only {step} commits before it; "
                    "older history was dropped by `lockgate store gc` retention)"
                )
            commit_id = parents[0]
        if at is not None:
            commit_id = self._as_of(repo, spec, commit_id, at)
        return commit_id

    def _named(self, repo: str, name: str) -> str:
        if is_full_id(name):
            try:
                self._objects.commit(name)
            except ObjectNotFoundError:
                raise RefNotFoundError(f"commit {name} does not exist in the store") from None
            return name
        branch = self._refs.read_branch(repo, name)
        if branch is not None:
            return branch[0]
        tag = self._refs.read_tag(repo, name)
        if tag is not None:
            return tag
        if _SHORT_ID.fullmatch(name):
            found = self._commits_with_prefix(name)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RefNotFoundError(
                    f"commit prefix {name!r} is ambiguous: {', '.join(sorted(found)[:10])}"
                    f"{' ...' if len(found) > 10 else ''}; give more characters"
                )
        branches, tags = self._refs.branches(repo), self._refs.tags(repo)
        if not branches and not tags:
            raise EmptyRepoError(f"repository {repo!r} has no commits yet, so {name!r} does not exist")
        raise RefNotFoundError(
            f"no branch, tag or commit {name!r} in repository {repo!r} "
            f"(branches: {', '.join(sorted(branches)) or 'none'}; tags: {', '.join(sorted(tags)) or 'none'})"
        )

    def _commits_with_prefix(self, prefix: str) -> list[str]:
        """Commit ids starting with ``prefix`` (8+ hex characters, as git's short ids): one
        listing of the objects under that prefix; trees and manifests that share it are skipped."""
        found = []
        for key in self._objects.keys_with_prefix(prefix):
            oid = key.rsplit("/", 1)[-1]
            try:
                self._objects.commit(oid)
            except (CorruptObjectError, ObjectNotFoundError):
                continue  # another kind of object, or gone since the listing
            found.append(oid)
        return found

    def _as_of(self, repo: str, spec: RefSpec, head: str, at: datetime) -> str:
        first: Commit | None = None
        for commit_id, commit in self.walk(head):
            if commit.datetime <= at:
                return commit_id
            first = commit
        if first is not None and first.parents:  # the walk ended at a cut, not at the first commit
            raise RefNotFoundError(
                f"{spec} in {repo!r} has no kept commit at or before {format_time(at)}: its oldest kept "
                f"commit is from {first.time}, and older history was dropped by gc retention"
            )
        since = f"; its first commit is from {first.time}" if first else ""
        raise RefNotFoundError(f"{spec} in {repo!r} did not exist yet at {format_time(at)}{since}")

    def walk(self, head: str) -> Iterator[tuple[str, Commit]]:
        commit_id, commit = head, self._objects.commit(head)
        while True:
            yield commit_id, commit
            if not commit.parents:
                return
            parent = self._parent_commit(commit_id, commit.parents[0])
            if parent is None:
                return
            commit_id, commit = commit.parents[0], parent

    def log(
        self, repo: str, ref: RefSpec | str, at: datetime | None = None, limit: int | None = None
    ) -> list[tuple[str, Commit]]:
        out: list[tuple[str, Commit]] = []
        for item in self.walk(self.resolve(repo, ref, at)):
            if limit is not None and len(out) >= limit:
                break
            out.append(item)
        return out
