"""Garbage collection: delete what no branch, tag or ledger entry can reach.

Mark, then sweep, under the collector lease (``store.leases``), after every writer that held
the store has committed:

1. **Mark.** Roots are every branch and tag of every repository, and every commit the
   deployment ledger names (a version that served, even if its branch moved on or was deleted),
   within ``ledger_retention`` (default: all of the ledger). From the roots, every commit
   (through all parents: by default history is kept; a ``HistoryRetention`` policy keeps only
   the newest N or those since T behind each root, and records where it cut), tree and
   manifest is reachable, and so is every pack a reachable manifest reads a chunk from, with
   its index.
2. **Re-check.** The refs are read again; if any moved since the mark (a writer that does not
   take leases, or a lease lost to a stall), the mark is redone.
3. **Sweep.** Unreachable packs, indexes and objects, and the half-written files of killed
   writers, are deleted when they are older than ``grace`` (default one hour): the second line of
   defence, for anything written around the lease protocol. An index goes before its pack, so a
   pack index never names a deleted pack.

A damaged store (a ref or object that names a missing object) is not swept: what the missing
object referenced cannot be known, so nothing would be safe to delete. ``lockgate store verify``
names the damage.

Packs that are only partly dead are reported (``partly_dead_packs``), and rewritten with only
their live chunks when their dead share reaches ``repack_threshold`` (``store.repack``; default
0.5, None keeps every pack whole): a rewrite pays only when much of a pack is dead. A repacked
pack leaves a relocation record that readers follow (``store.relocation``); records are
reachable while a reachable manifest names their pack, and are swept like anything else after.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from lockgate.store.backends.base import Backend, KeyInfo
from lockgate.store.errors import IntegrityError, NotFoundError, RefConflictError, StoreError
from lockgate.store.gc_generation import new_generation
from lockgate.store.history_retention import KEEP_ALL, HistoryRetention, read_cuts, record_cuts
from lockgate.store.ids import is_full_id
from lockgate.store.layout import INDEX_PREFIX, LEDGER_REPO, pack_id_of_index_key
from lockgate.store.leases import Lease, collector_hold
from lockgate.store.object_store import ObjectStore
from lockgate.store.objects import parse_time
from lockgate.store.pack import HEADER
from lockgate.store.refs import RefStore
from lockgate.store.relocation import RELOCATIONS_PREFIX, pack_id_of_relocation_key, relocation_key
from lockgate.store.relocation import decode as decode_relocation
from lockgate.store.repack import repack

PACKS_PREFIX = "packs/"
PACK_OVERHEAD = len(HEADER) + 20  # the header and the trailer (store/pack.py)
PACK_ENTRY_BYTES = 49  # one index entry per chunk
OBJECTS_PREFIX = "objects/"
# Repack a live pack once half of it is dead: at most one byte rewritten per byte freed.
DEFAULT_REPACK_THRESHOLD = 0.5
Progress = Callable[[int, int], None]  # (keys swept so far, keys to sweep)


@dataclass
class Swept:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class GcReport:
    dry_run: bool
    grace_seconds: float
    roots: int = 0
    commits: int = 0
    manifests: int = 0
    live_packs: int = 0
    live_bytes: int = 0
    freed: dict[str, Swept] = field(
        default_factory=lambda: {
            k: Swept() for k in ("packs", "indexes", "objects", "temporary", "relocations", "repacked")
        }
    )
    kept_young: Swept = field(default_factory=Swept)  # unreachable, but newer than the grace period
    partly_dead_packs: int = 0
    dead_bytes_in_live_packs: int = 0
    repack_threshold: float | None = None
    repacked_packs: int = 0  # partly dead packs rewritten with only their live chunks
    repacked_live_bytes: int = 0  # what those rewrites wrote
    history_cuts: int = 0  # kept commits whose older history the retention policy dropped
    marks: int = 0
    seconds: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return sum(s.bytes for s in self.freed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace_seconds,
            "roots": self.roots,
            "reachable": {
                "commits": self.commits,
                "manifests": self.manifests,
                "packs": self.live_packs,
                "pack_bytes": self.live_bytes,
            },
            "freed": {k: {"count": s.count, "bytes": s.bytes} for k, s in self.freed.items()},
            "bytes_freed": self.bytes_freed,
            "kept_young": {"count": self.kept_young.count, "bytes": self.kept_young.bytes},
            "partly_dead_packs": self.partly_dead_packs,
            "dead_bytes_in_live_packs": self.dead_bytes_in_live_packs,
            "repack_threshold": self.repack_threshold,
            "repacked": {"packs": self.repacked_packs, "bytes_written": self.repacked_live_bytes},
            "history_cuts": self.history_cuts,
            "marks": self.marks,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Mark:
    refs: dict[str, str]  # ref key -> commit id, as read before marking
    objects: set[str] = field(default_factory=set)  # reachable commit, tree and manifest ids
    packs: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # pack id -> its live (offset, bytes)
    commits: int = 0
    manifests: int = 0
    # Kept commit -> parents the retention policy drops this time (store.history_retention).
    cuts: dict[str, set[str]] = field(default_factory=dict)


class GarbageCollector:
    def __init__(
        self, backend: Backend, refs: RefStore, objects: ObjectStore, read_file: Callable[[str, str], bytes]
    ) -> None:
        self._backend = backend
        self._refs = refs
        self._objects = objects
        self._read_file = read_file  # (commit, path) -> verified bytes: Store.read_file

    def collect(
        self,
        *,
        grace_seconds: float = 3600.0,
        dry_run: bool = False,
        ledger_retention_seconds: float | None = None,
        wait_for_writers: float = 600.0,
        progress: Progress | None = None,
        retention: HistoryRetention = KEEP_ALL,
        repack_threshold: float | None = DEFAULT_REPACK_THRESHOLD,
        on_wait: Callable[[list[Lease]], None] | None = None,
    ) -> GcReport:
        """``repack_threshold``: rewrite a live pack whose dead share reaches it (None: never).
        ``on_wait``: told the live writer leases while the collection waits for them."""
        started = time.monotonic()
        report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds, repack_threshold=repack_threshold)
        with collector_hold(self._backend, wait_for_writers=wait_for_writers, on_wait=on_wait):
            # Anything written after this moment, minus the grace period, is never deleted.
            cutoff = time.time() - grace_seconds
            mark = self._mark(ledger_retention_seconds, retention)
            report.marks = 1
            while self._read_refs() != mark.refs:
                if report.marks >= 5:
                    raise RefConflictError("refs kept moving during garbage collection; nothing was deleted")
                mark = self._mark(ledger_retention_seconds, retention)
                report.marks += 1
            report.roots = len(set(mark.refs.values()))
            report.commits, report.manifests = mark.commits, mark.manifests
            report.history_cuts = len(mark.cuts)
            if mark.cuts and not dry_run:
                # Before any delete: a walk that meets a dropped parent must read it as the
                # end of the kept history, never as damage.
                record_cuts(self._backend, mark.cuts)
            self._sweep(mark, cutoff, report, dry_run, progress)
        report.seconds = time.monotonic() - started
        return report

    # -- mark ------------------------------------------------------------------------------

    def _read_refs(self) -> dict[str, str]:
        refs: dict[str, str] = {}
        for repo in self._refs.repos():
            refs.update({f"{repo}/heads/{name}": commit for name, commit in self._refs.branches(repo).items()})
            refs.update({f"{repo}/tags/{name}": commit for name, commit in self._refs.tags(repo).items()})
        return refs

    def _mark(self, ledger_retention_seconds: float | None, retention: HistoryRetention) -> _Mark:
        mark = _Mark(self._read_refs())
        roots = list(dict.fromkeys(mark.refs.values()))
        ledger_head = mark.refs.get(f"{LEDGER_REPO}/heads/main")
        if ledger_head is not None:
            roots += self._ledger_commits(ledger_head, ledger_retention_seconds)
        known_cuts = read_cuts(self._backend)
        # Breadth first from every root at once: a commit is first met at its least depth
        # behind any ref, which is the depth the retention policy judges.
        pending: deque[tuple[str, int, str | None]] = deque((root, 0, None) for root in dict.fromkeys(roots))
        parents_of: dict[str, tuple[str, ...]] = {}
        judged: set[str] = set()
        try:
            while pending:
                commit_id, depth, child = pending.popleft()
                if commit_id in judged:
                    continue
                judged.add(commit_id)
                try:
                    commit = self._objects.commit(commit_id)
                except NotFoundError:
                    if child is not None and commit_id in known_cuts.get(child, frozenset()):
                        continue  # dropped by an earlier collection's retention policy: not damage
                    raise
                if not retention.keeps(depth, parse_time(commit.time).timestamp()):
                    continue
                mark.objects.add(commit_id)
                mark.commits += 1
                parents_of[commit_id] = commit.parents
                pending.extend((p, depth + 1, commit_id) for p in commit.parents if p not in judged)
                if commit.tree in mark.objects:
                    continue
                mark.objects.add(commit.tree)
                for entry in self._objects.tree(commit.tree).entries.values():
                    if entry.manifest_id in mark.objects:
                        continue
                    mark.objects.add(entry.manifest_id)
                    mark.manifests += 1
                    for chunk in self._objects.manifest(entry.manifest_id).chunks:
                        mark.packs.setdefault(chunk.pack_id, set()).add((chunk.offset, chunk.stored_length))
        except NotFoundError as exc:
            raise IntegrityError(
                f"the store is damaged ({exc}); garbage collection deletes nothing until `lockgate store verify` passes"
            ) from exc
        for commit_id, parents in parents_of.items():
            dropped = {p for p in parents if p not in mark.objects and p not in known_cuts.get(commit_id, frozenset())}
            if dropped:
                mark.cuts[commit_id] = dropped
        return mark

    def _ledger_commits(self, head: str, retention_seconds: float | None) -> list[str]:
        """Every weights and dataset commit the ledger names (within the retention window)."""
        cutoff = None if retention_seconds is None else time.time() - retention_seconds
        named: list[str] = []
        tree = self._objects.tree(self._objects.commit(head).tree)
        for path in tree.entries:
            if not path.startswith("events/"):
                continue
            try:
                event = orjson.loads(self._read_file(head, path))
            except (orjson.JSONDecodeError, NotFoundError):
                continue  # not an event we can read: it names nothing to keep
            if not isinstance(event, dict) or (cutoff is not None and _event_time(event) < cutoff):
                continue
            for side in ("to", "from"):
                ref = event.get(side)
                if not isinstance(ref, dict):
                    continue
                for key in ("weights_commit", "dataset_commit"):
                    commit = ref.get(key)
                    if isinstance(commit, str) and is_full_id(commit) and self._objects.exists(commit):
                        named.append(commit)
        return named

    # -- sweep -----------------------------------------------------------------------------

    def _sweep(self, mark: _Mark, cutoff: float, report: GcReport, dry_run: bool, progress: Progress | None) -> None:
        backend = self._backend
        doomed: list[tuple[str, KeyInfo]] = []
        pack_sizes: dict[str, int] = {}
        pack_infos: list[KeyInfo] = []
        index_keys: dict[str, list[str]] = {}

        def consider(kind: str, info: KeyInfo, reachable: bool) -> None:
            if reachable:
                return
            if info.modified > cutoff:
                report.kept_young.add(info.size)
                return
            doomed.append((kind, info))

        object_infos = list(backend.list_info(OBJECTS_PREFIX))
        # The grace period protects chunks too: a manifest newer than the cutoff that no ref
        # reaches yet (a writer that took no lease, about to commit) keeps its chunks live, so
        # neither the sweep nor a repack drops them.
        self._protect_young_manifests(mark, object_infos, cutoff)
        for info in backend.list_info(PACKS_PREFIX):
            pack_sizes[info.key.rsplit("/", 1)[-1].removesuffix(".pack")] = info.size
            pack_infos.append(info)
        # Chunks of repacked packs live where their relocation records say: those packs, and
        # the records, are reachable too. Before anything is judged.
        needed_records = self._follow_relocations(mark, pack_sizes)
        for info in backend.list_info(INDEX_PREFIX):
            pack_id = pack_id_of_index_key(info.key)
            index_keys.setdefault(pack_id, []).append(info.key)
            consider("indexes", info, pack_id in mark.packs)
        for info in pack_infos:
            consider("packs", info, info.key.rsplit("/", 1)[-1].removesuffix(".pack") in mark.packs)
        for info in object_infos:
            consider("objects", info, info.key.rsplit("/", 1)[-1] in mark.objects)
        for info in backend.list_info(RELOCATIONS_PREFIX):
            consider("relocations", info, pack_id_of_relocation_key(info.key) in needed_records)
        for info in backend.temporaries():
            consider("temporary", info, False)
        to_repack: list[tuple[str, set[int]]] = []
        for pack_id, chunks in mark.packs.items():
            size = pack_sizes.get(pack_id)
            if size is None:
                continue
            report.live_packs += 1
            report.live_bytes += size
            # What a pack of only its live chunks would take: header, chunks, index, trailer.
            needed = PACK_OVERHEAD + sum(length for _, length in chunks) + PACK_ENTRY_BYTES * len(chunks)
            if size > needed:
                report.partly_dead_packs += 1
                report.dead_bytes_in_live_packs += size - needed
                if report.repack_threshold is not None and size - needed >= report.repack_threshold * size:
                    to_repack.append((pack_id, {offset for offset, _ in chunks}))
        # Indexes first: a dedup reader must never find an index whose pack is gone.
        order = {"indexes": 0, "packs": 1, "objects": 2, "relocations": 3, "temporary": 4}
        doomed.sort(key=lambda item: order[item[0]])
        if (doomed or to_repack) and not dry_run:
            # Before the first delete: a writer that refreshes from here on starts its table again.
            new_generation(backend)
        steps = len(doomed) + len(to_repack)
        for done, (kind, info) in enumerate(doomed, start=1):
            if not dry_run:
                if kind == "temporary":
                    backend.delete_temporary(info.key)
                else:
                    backend.delete(info.key)
                if kind == "objects":
                    self._objects.forget(info.key.rsplit("/", 1)[-1])
            report.freed[kind].add(info.size)
            if progress is not None:
                progress(done, steps)
        for done, (pack_id, offsets) in enumerate(to_repack, start=len(doomed) + 1):
            old_size = pack_sizes[pack_id]
            if dry_run:
                chunks = mark.packs[pack_id]
                new_size = PACK_OVERHEAD + sum(length for _, length in chunks) + PACK_ENTRY_BYTES * len(chunks)
            else:
                new_size = repack(backend, pack_id, offsets, index_keys.get(pack_id, [])).new_bytes
            report.repacked_packs += 1
            report.repacked_live_bytes += new_size
            report.freed["repacked"].add(old_size - new_size)
            if progress is not None:
                progress(done, steps)

    def _protect_young_manifests(self, mark: _Mark, object_infos: list[KeyInfo], cutoff: float) -> None:
        for info in object_infos:
            object_id = info.key.rsplit("/", 1)[-1]
            if info.modified <= cutoff or object_id in mark.objects:
                continue
            try:
                manifest = self._objects.manifest(object_id)
            except StoreError:
                continue  # a young commit or tree (its manifests are objects of their own), or unreadable
            for chunk in manifest.chunks:
                mark.packs.setdefault(chunk.pack_id, set()).add((chunk.offset, chunk.stored_length))

    def _follow_relocations(self, mark: _Mark, existing: dict[str, int]) -> set[str]:
        """Move the live chunks of every repacked pack the mark found (a manifest still names
        it) to the packs its relocation record names, through chains of repacks; return the
        packs whose records are needed. A manifest chunk the record does not list is damage."""
        needed: set[str] = set()
        pending = deque(p for p in mark.packs if p not in existing)
        seen: set[str] = set()
        while pending:
            pack_id = pending.popleft()
            if pack_id in seen:
                continue
            seen.add(pack_id)
            try:
                record = decode_relocation(pack_id, self._backend.get(relocation_key(pack_id)))
            except NotFoundError:
                continue  # a pack gone without a record: damage `store verify` names; nothing moves
            needed.add(pack_id)
            for offset, _stored in mark.packs[pack_id]:
                new = record.get(offset)
                if new is None:
                    raise IntegrityError(
                        f"pack {pack_id} was repacked but its relocation record lacks the chunk at offset {offset}; "
                        "garbage collection deletes nothing until `lockgate store verify` passes"
                    )
                mark.packs.setdefault(new.pack_id, set()).add((new.offset, new.stored_length))
                if new.pack_id not in existing and new.pack_id not in seen:
                    pending.append(new.pack_id)
        return needed


def _event_time(event: dict[str, Any]) -> float:
    try:
        return parse_time(str(event.get("time"))).timestamp()
    except (ValueError, TypeError):
        return float("inf")  # an event we cannot date is kept


__all__ = ["GarbageCollector", "GcReport"]
