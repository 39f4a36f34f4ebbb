"""Checking a repository end to end: every commit, tree and manifest reachable from its refs,
and every chunk those manifests name, read back and hashed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from lockgate.store.backends.base import Backend
from lockgate.store.chunk_reader import plan_spans, read_span
from lockgate.store.errors import IntegrityError, NotFoundError, StoreError
from lockgate.store.history import History
from lockgate.store.object_store import ObjectStore
from lockgate.store.objects import ChunkRef
from lockgate.store.refs import RefStore


@dataclass
class Problem:
    what: str
    detail: str
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        affected = (
            f" (affects {', '.join(sorted(self.files)[:5])}{'...' if len(self.files) > 5 else ''})"
            if self.files
            else ""
        )
        return f"{self.what}: {self.detail}{affected}"


@dataclass
class VerifyReport:
    repos: list[str] = field(default_factory=list)
    commits: int = 0
    files: int = 0
    chunks: int = 0
    bytes_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(backend: Backend, refs: RefStore, objects: ObjectStore, history: History, repos: list[str]) -> VerifyReport:
    report = VerifyReport(repos=repos)
    manifests: dict[str, set[str]] = defaultdict(set)  # manifest id -> paths using it
    seen_commits: set[str] = set()
    for repo in repos:
        heads = {**refs.branches(repo), **refs.tags(repo)}
        for name, head in heads.items():
            try:
                for commit_id, commit in history.walk(head):
                    if commit_id in seen_commits:
                        break
                    seen_commits.add(commit_id)
                    report.commits += 1
                    tree = objects.tree(commit.tree)
                    for path, entry in tree.entries.items():
                        manifests[entry.manifest_id].add(f"{repo}:{path}")
            except (IntegrityError, NotFoundError) as exc:
                report.problems.append(Problem(f"history of {repo}@{name}", str(exc)))

    chunk_users: dict[ChunkRef, set[str]] = defaultdict(set)
    for manifest_id, paths in manifests.items():
        try:
            manifest = objects.manifest(manifest_id)
        except (IntegrityError, NotFoundError) as exc:
            report.problems.append(Problem(f"manifest {manifest_id}", str(exc), sorted(paths)))
            continue
        report.files += 1
        if sum(c.length for c in manifest.chunks) != manifest.size:
            report.problems.append(
                Problem(f"manifest {manifest_id}", "chunk lengths do not add up to the size", sorted(paths))
            )
        for ref in manifest.chunks:
            chunk_users[ref].update(paths)

    for span in plan_spans(chunk_users, keep_order=False):
        try:
            read_span(backend, span)
            report.chunks += len(span.refs)
            report.bytes_checked += sum(r.length for r in span.refs)
        except StoreError:
            # Re-check chunk by chunk so the report names exactly which chunks are bad.
            for ref in span.refs:
                single = plan_spans([ref])[0]
                try:
                    read_span(backend, single)
                    report.chunks += 1
                    report.bytes_checked += ref.length
                except StoreError as exc:
                    report.problems.append(Problem(f"chunk {ref.chunk_id}", str(exc), sorted(chunk_users[ref])))
    return report
