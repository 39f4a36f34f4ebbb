"""The store's public face: open a root, commit files to a branch, read them back.

This is the API the loader and the CLI use. It composes the backend, the object store, the
chunk index, refs and history, and it owns the one rule that makes the store safe: the
write order packs -> manifests -> trees -> commit -> ref, with the ref moved only by
compare-and-swap (a writer that loses re-reads the head, rebases its change, retries).
"""

from __future__ import annotations

import getpass
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3
import orjson

from lockgate.store.backends import Backend, open_backend
from lockgate.store.chunk_index import ChunkIndex
from lockgate.store.chunk_reader import DEFAULT_PARALLELISM, stream_chunks
from lockgate.store.diff import Change, diff_entries, subtree
from lockgate.store.errors import (
    IntegrityError,
    InvalidRangeError,
    PathNotFoundError,
    ProtectedRefError,
    RefConflictError,
    RefNotFoundError,
    StoreUnreachableError,
)
from lockgate.store.gc import DEFAULT_REPACK_THRESHOLD, GarbageCollector, GcReport
from lockgate.store.history import History
from lockgate.store.history_retention import KEEP_ALL, HistoryRetention
from lockgate.store.ingest import Ingest
from lockgate.store.layout import FORMAT_KEY, FORMAT_VERSION, LEDGER_REPO, SIGNATURES_REPO
from lockgate.store.leases import Lease, writer_lease
from lockgate.store.object_store import ObjectStore
from lockgate.store.objects import ChunkRef, Commit, Manifest, Tree, TreeEntry, utc_now_iso
from lockgate.store.paths import contained
from lockgate.store.refs import RefStore
from lockgate.store.uri import DEFAULT_BRANCH, RefSpec, StoreURI, check_name, normalize_path
from lockgate.store.verify import VerifyReport, verify

ProgressCallback = Callable[[int], None]
_MAX_CAS_ATTEMPTS = 64
# The gateway's deployment ledger and the model signatures live in the store; nothing may delete
# their history.
PROTECTED_REPOS = frozenset({LEDGER_REPO, SIGNATURES_REPO})


@dataclass(frozen=True)
class PushResult:
    repo: str
    branch: str
    commit_id: str
    parent_id: str | None
    files: int
    bytes_total: int
    bytes_new: int
    bytes_reused: int
    bytes_stored: int
    chunks_total: int
    chunks_new: int
    packs_written: int
    seconds: float
    cas_retries: int
    changed: bool = True  # False: the branch already held exactly this tree; no commit was made

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Stream:
    """File content read once, in order, never held whole: an S3 object, a download."""

    open: Callable[[], Any]  # returns an object with read(n) and close()
    size: int
    name: str = ""  # where it comes from, for messages


FileSource = Path | bytes | Stream


@dataclass(frozen=True)
class DirEntry:
    name: str
    path: str
    is_dir: bool
    size: int | None


@dataclass
class CheckoutReport:
    files: int = 0
    bytes_written: int = 0
    paths: list[str] = field(default_factory=list)


def default_author() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def size_of(source: FileSource) -> int:
    if isinstance(source, bytes | bytearray | memoryview):
        return len(source)
    if isinstance(source, Stream):
        return source.size
    return Path(source).stat().st_size


def collect_files(local_path: Path, dest: str) -> list[tuple[str, Path]]:
    """Map a local file or directory onto store paths under ``dest``."""
    local_path = Path(local_path)
    dest = normalize_path(dest)
    if local_path.is_file():
        return [(dest or local_path.name, local_path)]
    if not local_path.is_dir():
        raise PathNotFoundError(f"local path {str(local_path)!r} does not exist")
    files = []
    for path in sorted(local_path.rglob("*")):
        if path.is_file():
            rel = path.relative_to(local_path).as_posix()
            files.append((f"{dest}/{rel}" if dest else rel, path))
    return files


class Store:
    def __init__(self, backend: Backend, *, index_cache_dir: Path | None = None) -> None:
        self.backend = backend
        self.objects = ObjectStore(backend)
        self.refs = RefStore(backend)
        self.history = History(self.refs, self.objects, self.backend)
        self._index = ChunkIndex(backend, index_cache_dir)

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        create: bool = False,
        s3_endpoint_url: str | None = None,
        index_cache_dir: Path | None = None,
    ) -> Store:
        """Open the store at ``root`` (a directory, ``s3://bucket/prefix`` or ``memory://``).
        With ``create`` a missing store is initialised; otherwise it must already exist.
        ``index_cache_dir`` keeps a verified local copy of the dedup table there, so a push from
        a new process reads only the pack indexes written since the last one."""
        backend = open_backend(str(root), create=create, s3_endpoint_url=s3_endpoint_url)
        if not backend.exists(FORMAT_KEY):
            if not create:
                raise StoreUnreachableError(
                    f"{backend.root!r} is not a lockgate store (no {FORMAT_KEY}); push to it to create one"
                )
            backend.swap_ref(FORMAT_KEY, orjson.dumps({"format": FORMAT_VERSION, "created": utc_now_iso()}), None)
        else:
            fmt = orjson.loads(backend.get(FORMAT_KEY)).get("format")
            if fmt != FORMAT_VERSION:
                raise StoreUnreachableError(
                    f"store {backend.root!r} has format {fmt}; this lockgate reads {FORMAT_VERSION}"
                )
        return cls(backend, index_cache_dir=index_cache_dir)

    @property
    def root(self) -> str:
        return self.backend.root

    def close(self) -> None:
        self.backend.close()

    # -- writing ---------------------------------------------------------------------------

    def commit_files(
        self,
        repo: str,
        branch: str,
        files: Iterable[tuple[str, FileSource]],
        *,
        message: str = "",
        author: str | None = None,
        metadata: Mapping[str, str] | None = None,
        remove: Iterable[str] = (),
        progress: ProgressCallback | None = None,
        allow_empty: bool = True,
        start_from: str | None = None,
        gc_wait: float = 600.0,
    ) -> PushResult:
        """Commit ``files`` ((store path, local path or bytes), ...) onto ``branch`` as one
        commit. Other paths on the branch are kept; paths in ``remove`` are deleted. With
        ``allow_empty=False``, a change that leaves the tree as it is makes no commit
        (``PushResult.changed`` is False and ``commit_id`` is the head). If ``branch`` does not
        exist yet, ``start_from`` (a commit id) is its fork point; without it the first commit
        is a root. The whole push holds a writer lease (``store.leases``): it waits up to
        ``gc_wait`` seconds while a garbage collection holds the store."""
        with writer_lease(self.backend, wait=gc_wait):
            return self._commit_files(repo, branch, files, message=message, author=author, metadata=metadata,
                                      remove=remove, progress=progress, allow_empty=allow_empty,
                                      start_from=start_from)  # fmt: skip

    def _commit_files(
        self,
        repo: str,
        branch: str,
        files: Iterable[tuple[str, FileSource]],
        *,
        message: str,
        author: str | None,
        metadata: Mapping[str, str] | None,
        remove: Iterable[str],
        progress: ProgressCallback | None,
        allow_empty: bool,
        start_from: str | None,
    ) -> PushResult:
        started = time.perf_counter()
        check_name("branch", branch)
        file_list = list(files)
        # Every path is checked before anything is written: a path the store could never check
        # out is refused now, not found by a reader later.
        paths = [normalize_path(dest) for dest, _ in file_list]
        if "" in paths:
            raise PathNotFoundError("a file needs a non-empty destination path")
        self.refs.create_repo(repo)
        self._index.refresh()
        size_hint = sum(size_of(src) for _, src in file_list)
        ingest = Ingest(self.backend, self._index, progress=progress, size_hint=size_hint)
        try:
            for _dest, source in file_list:
                if isinstance(source, bytes | bytearray | memoryview):
                    ingest.add_bytes(source)
                elif isinstance(source, Stream):
                    reader = source.open()
                    try:
                        ingest.add_stream(reader.read)
                    finally:
                        reader.close()
                else:
                    ingest.add_file(Path(source))
            manifests = ingest.finish()
        except BaseException:
            ingest.abort()
            raise
        changes: dict[str, TreeEntry | None] = {p: None for p in map(normalize_path, remove)}
        for path, manifest in zip(paths, manifests, strict=True):
            changes[path] = TreeEntry(self.objects.put(manifest), manifest.size)
        commit_id, parent, retries = self._commit_changes(
            repo,
            branch,
            changes,
            message=message,
            author=author or default_author(),
            metadata=metadata or {},
            allow_empty=allow_empty,
            start_from=start_from,
        )
        s = ingest.stats
        return PushResult(
            repo=repo,
            branch=branch,
            commit_id=commit_id,
            parent_id=parent,
            files=len(paths),
            bytes_total=s.bytes_total,
            bytes_new=s.bytes_new,
            bytes_reused=s.bytes_reused,
            bytes_stored=s.bytes_stored,
            chunks_total=s.chunks_total,
            chunks_new=s.chunks_new,
            packs_written=s.packs_written,
            seconds=time.perf_counter() - started,
            cas_retries=retries,
            changed=commit_id != parent,
        )

    def push(
        self,
        local_path: Path | str,
        repo: str,
        branch: str = DEFAULT_BRANCH,
        dest: str = "",
        **kwargs: object,
    ) -> PushResult:
        """Commit a local file or directory under ``dest``."""
        return self.commit_files(repo, branch, collect_files(Path(local_path), dest), **kwargs)  # type: ignore[arg-type]

    def _commit_changes(
        self,
        repo: str,
        branch: str,
        changes: Mapping[str, TreeEntry | None],
        *,
        message: str,
        author: str,
        metadata: Mapping[str, str],
        allow_empty: bool = True,
        start_from: str | None = None,
    ) -> tuple[str, str | None, int]:
        """Returns (commit id, parent id, CAS retries); commit id == parent id when nothing
        changed and ``allow_empty`` is False."""
        for attempt in range(_MAX_CAS_ATTEMPTS):
            head = self.refs.read_branch(repo, branch)
            # A new branch forks from start_from; its ref is still created by CAS (version None).
            parent, version = (head[0], head[1]) if head else (start_from, None)
            before = dict(self.objects.tree(self.objects.commit(parent).tree).entries) if parent else {}
            entries = dict(before)
            for path, entry in changes.items():
                if entry is None:
                    entries.pop(path, None)
                else:
                    entries[path] = entry
            if parent is not None and not allow_empty and entries == before:
                return parent, parent, attempt
            tree_id = self.objects.put(Tree(entries))
            commit = Commit(
                tree=tree_id,
                parents=(parent,) if parent else (),
                author=author,
                message=message,
                time=utc_now_iso(),
                metadata=dict(metadata),
            )
            commit_id = self.objects.put(commit)
            if self.refs.swap_branch(repo, branch, commit_id, version):
                return commit_id, parent, attempt
            # Lost the race: back off with jitter so eight writers do not collide forever.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise RefConflictError(f"gave up moving {repo}@{branch} after {_MAX_CAS_ATTEMPTS} compare-and-swap attempts")

    # -- branches ----------------------------------------------------------------------------

    def create_branch(self, repo: str, name: str, ref: RefSpec | str, at: datetime | None = None) -> str:
        """Create branch ``name`` at the commit ``ref`` names (as of ``at``): create-once, so
        of many racing creators exactly one wins and the others get ``BranchExistsError``."""
        with writer_lease(self.backend):  # a new ref to an old commit: not while a collection sweeps
            commit_id = self.resolve(repo, ref, at)
            self.refs.create_branch(repo, name, commit_id)
        return commit_id

    def delete_branch(self, repo: str, name: str, *, force: bool = False) -> str:
        """Delete branch ``name``; return the commit it pointed at (its commits stay, reachable
        by id until garbage collection). The default branch needs ``force``; the ledger's
        branches cannot be deleted at all."""
        if repo in PROTECTED_REPOS:
            what = "the deployment ledger" if repo == LEDGER_REPO else "the model signatures"
            raise ProtectedRefError(f"repository {repo!r} holds {what}; its branches cannot be deleted")
        if name == DEFAULT_BRANCH and not force:
            raise ProtectedRefError(f"{name!r} is the default branch of {repo!r}; deleting it needs --force")
        head = self.refs.read_branch(repo, name)
        if head is None:
            self.history.resolve(repo, name)  # raises the usual "no branch ... (branches: ...)"
            raise RefNotFoundError(f"{name!r} is a tag or a commit in {repo!r}, not a branch")
        self.refs.delete_branch(repo, name)
        return head[0]

    def branch_heads(self, repo: str) -> list[tuple[str, str, Commit]]:
        """(branch, head commit id, head commit) for every branch, newest change first."""
        self.refs.require_repo(repo)
        rows = [(name, head, self.objects.commit(head)) for name, head in self.refs.branches(repo).items()]
        return sorted(rows, key=lambda row: row[2].time, reverse=True)

    def branch_exists(self, repo: str, name: str) -> bool:
        return self.refs.read_branch(repo, name) is not None

    def tag(self, repo: str, name: str, ref: RefSpec | str) -> str:
        with writer_lease(self.backend):
            commit_id = self.resolve(repo, ref)
            self.refs.create_tag(repo, name, commit_id)
        return commit_id

    # -- reading ---------------------------------------------------------------------------

    def resolve(self, repo: str, ref: RefSpec | str = DEFAULT_BRANCH, at: datetime | None = None) -> str:
        return self.history.resolve(repo, ref, at)

    def resolve_uri(self, uri: StoreURI) -> str:
        """The commit a ``lockgate://`` URI names, time travel (``@{TIME}``) included."""
        return self.history.resolve(uri.repo, uri.ref, uri.at)

    def log(
        self, repo: str, ref: RefSpec | str = DEFAULT_BRANCH, at: datetime | None = None, limit: int | None = None
    ) -> list[tuple[str, Commit]]:
        return self.history.log(repo, ref, at, limit)

    def commit(self, commit_id: str) -> Commit:
        return self.objects.commit(commit_id)

    def tree(self, commit_id: str) -> Tree:
        return self.objects.tree(self.objects.commit(commit_id).tree)

    def manifest(self, manifest_id: str) -> Manifest:
        return self.objects.manifest(manifest_id)

    def list_files(self, commit_id: str, path: str = "") -> dict[str, TreeEntry]:
        """Every file at or under ``path``, keyed by full path. Raises if there is none."""
        path = normalize_path(path)
        entries = self.tree(commit_id).entries
        if not path:
            return dict(entries)
        if path in entries:
            return {path: entries[path]}
        found = {p: e for p, e in entries.items() if p.startswith(path + "/")}
        if not found:
            raise PathNotFoundError(f"no file or directory {path!r} at commit {commit_id[:12]}")
        return found

    def list_dir(self, commit_id: str, path: str = "") -> list[DirEntry]:
        """Immediate children of directory ``path`` (empty list if it has none)."""
        path = normalize_path(path)
        base = path + "/" if path else ""
        children: dict[str, DirEntry] = {}
        for full, entry in self.tree(commit_id).entries.items():
            if not full.startswith(base):
                continue
            name, sep, _ = full[len(base) :].partition("/")
            child = base + name
            if sep:
                children.setdefault(name, DirEntry(name, child, True, None))
            else:
                children[name] = DirEntry(name, child, False, entry.size)
        return sorted(children.values(), key=lambda d: d.name)

    def stat(self, commit_id: str, path: str) -> TreeEntry:
        path = normalize_path(path)
        entry = self.tree(commit_id).entries.get(path)
        if entry is None:
            raise PathNotFoundError(f"no file {path!r} at commit {commit_id[:12]}")
        return entry

    def file_manifest(self, commit_id: str, path: str) -> Manifest:
        return self.objects.manifest(self.stat(commit_id, path).manifest_id)

    def stream_file(
        self,
        commit_id: str,
        path: str,
        start: int = 0,
        length: int | None = None,
        *,
        progress: ProgressCallback | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> Iterator[bytes]:
        """Yield the file's bytes from ``start`` (``length`` bytes, or to the end). Every
        chunk is verified before any of its bytes are yielded."""
        manifest = self.file_manifest(commit_id, path)
        end = manifest.size if length is None else min(manifest.size, start + length)
        if start < 0 or start > manifest.size:
            raise InvalidRangeError(f"range start {start:,} is outside {path!r} ({manifest.size:,} bytes)")
        if length is not None and length < 0:
            raise InvalidRangeError(f"range length {length:,} is negative")
        if end <= start:
            return
        offsets, needed = [], []
        pos = 0
        for ref in manifest.chunks:
            if pos + ref.length > start and pos < end:
                offsets.append(pos)
                needed.append(ref)
            pos += ref.length
        for chunk_start, (_ref, raw) in zip(
            offsets, stream_chunks(self.backend, needed, parallelism=parallelism, progress=progress), strict=True
        ):
            lo = max(start - chunk_start, 0)
            hi = min(end - chunk_start, len(raw))
            yield raw[lo:hi] if (lo, hi) != (0, len(raw)) else raw

    def read_file(self, commit_id: str, path: str, start: int = 0, length: int | None = None) -> bytes:
        return b"".join(self.stream_file(commit_id, path, start, length))

    def checkout(
        self, commit_id: str, path: str, dest: Path | str, *, progress: ProgressCallback | None = None
    ) -> CheckoutReport:
        """Write the files at or under ``path`` into ``dest``, each verified against its
        BLAKE3 before it is renamed into place. A file (not a directory) lands as
        ``dest/<its base name>``."""
        path = normalize_path(path)
        files = self.list_files(commit_id, path)
        dest = Path(dest)
        report = CheckoutReport()
        for full in sorted(files):
            rel = full.rsplit("/", 1)[-1] if full == path else (full[len(path) + 1 :] if path else full)
            target = contained(dest, rel)
            report.bytes_written += self.export_file(commit_id, full, target, progress=progress)
            report.files += 1
            report.paths.append(rel)
        return report

    def export_file(
        self, commit_id: str, path: str, target: Path | str, *, progress: ProgressCallback | None = None
    ) -> int:
        """Write one file to ``target``: streamed to a temporary name, checked against the
        manifest's BLAKE3, then renamed into place, so ``target`` is never partial or wrong.
        Returns the bytes written."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest = self.file_manifest(commit_id, path)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}")
        hasher = blake3.blake3()
        try:
            with open(partial, "wb") as fh:
                for piece in self.stream_file(commit_id, path, progress=progress):
                    hasher.update(piece)
                    fh.write(piece)
            if hasher.hexdigest() != manifest.blake3:
                raise IntegrityError(f"file {path!r} at {commit_id[:12]} does not match its BLAKE3 {manifest.blake3}")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return manifest.size

    def chunks_needed(self, manifest_ids: Iterable[str], have: Container[str]) -> list[ChunkRef]:
        """The distinct chunks of these manifests that are not in ``have`` (a set of chunk
        ids held locally), in pack order, ready for ``fetch_chunks``."""
        needed: dict[str, ChunkRef] = {}
        for manifest_id in manifest_ids:
            for ref in self.objects.manifest(manifest_id).chunks:
                if ref.chunk_id not in have and ref.chunk_id not in needed:
                    needed[ref.chunk_id] = ref
        return sorted(needed.values(), key=lambda r: (r.pack_id, r.offset))

    def fetch_chunks(
        self,
        refs: Iterable[ChunkRef],
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        progress: ProgressCallback | None = None,
    ) -> Iterator[tuple[ChunkRef, bytes]]:
        """Fetch chunks with coalesced, parallel ranged reads; each one verified."""
        return stream_chunks(self.backend, list(refs), parallelism=parallelism, keep_order=False, progress=progress)

    def diff(self, old: StoreURI, new: StoreURI) -> list[Change]:
        """Files added, removed or modified from ``old`` to ``new`` (each a repo, ref and path)."""
        before = subtree(self.tree(self.resolve_uri(old)), old.path)
        after = subtree(self.tree(self.resolve_uri(new)), new.path)
        return diff_entries(before, after)

    def last_commit_touching(self, repo: str, ref: RefSpec | str, path: str) -> str:
        """The newest commit on ``ref`` that changed anything at or under ``path`` (as
        ``git log -1 -- path``)."""
        path = normalize_path(path)
        previous: tuple[str, dict[str, TreeEntry]] | None = None
        for commit_id, commit in self.history.walk(self.resolve(repo, ref)):
            entries = subtree(self.objects.tree(commit.tree), path)
            if previous is not None and previous[1] != entries:
                return previous[0]
            previous = (commit_id, entries)
        if previous is None or not previous[1]:
            raise PathNotFoundError(f"no commit on {repo}@{ref} has anything at {path!r}")
        return previous[0]

    def gc(
        self,
        *,
        grace_seconds: float = 3600.0,
        dry_run: bool = False,
        ledger_retention_seconds: float | None = None,
        wait_for_writers: float = 600.0,
        progress: Callable[[int, int], None] | None = None,
        retention: HistoryRetention = KEEP_ALL,
        repack_threshold: float | None = DEFAULT_REPACK_THRESHOLD,
        on_wait: Callable[[list[Lease]], None] | None = None,
    ) -> GcReport:
        """Delete what no branch, tag or ledger entry reaches, older than the grace period, and
        repack live packs at least ``repack_threshold`` dead (``store.gc``, ``store.repack``).
        Safe with concurrent writers: see ``store.leases``; ``on_wait`` is told the writers the
        collection waits for."""
        collector = GarbageCollector(self.backend, self.refs, self.objects, self.read_file)
        return collector.collect(grace_seconds=grace_seconds, dry_run=dry_run, progress=progress,
                                 ledger_retention_seconds=ledger_retention_seconds,
                                 wait_for_writers=wait_for_writers, retention=retention,
                                 repack_threshold=repack_threshold, on_wait=on_wait)  # fmt: skip

    def verify(self, repos: list[str] | None = None) -> VerifyReport:
        names = repos if repos is not None else self.refs.repos()
        for name in names:
            self.refs.require_repo(name)
        return verify(self.backend, self.refs, self.objects, self.history, names)
