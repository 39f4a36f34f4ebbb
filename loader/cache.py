"""The gateway-local model cache: verified files per version, delta-fetched, bounded, LRU.

Layout under the cache directory::

    versions/<key>/                 a complete version: its files, plus .lockgate-version.json
    versions/<key>/.lockgate-derived/  what the gateway derives from it (ONNX graphs, skew
                                    profiles): it belongs to the version and is evicted with it
    partial/<key>/                  a version being fetched (resumable; never loaded from)
    locks/<key>.lock                one materialization of a key at a time, across processes
    pins/<uri hash>.json            what each URI last resolved to (``loader.local_pins``), for
                                    restarts while the registry is down
    leases/<key>/<holder>           a version some process serves: never evicted by another
                                    (``loader.cache_leases``)

A version is complete exactly when its directory is in ``versions/``: it is assembled in
``partial/``, every file checked against its BLAKE3, its metadata written, and then the
directory is renamed into place (atomic). A crash leaves ``partial/<key>``; the next attempt
keeps every chunk already written there that still hashes right, and fetches the rest.

New versions fetch only chunks that no held version has: chunks of complete versions are
copied from their local files (and re-verified) instead of downloaded.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import orjson
from filelock import FileLock

from lockgate.loader.cache_leases import CacheLeases
from lockgate.loader.errors import (
    ArtifactIntegrityError,
    CacheFullError,
    DiskFullError,
    NoArtifactsError,
    StoreUnavailableError,
)
from lockgate.loader.resolved import WeightsLocation
from lockgate.store import Store
from lockgate.store.errors import BackendError, IntegrityError, InvalidPathError, NotFoundError, StoreError
from lockgate.store.ids import chunk_id as compute_chunk_id
from lockgate.store.objects import ChunkRef, Manifest
from lockgate.store.paths import contained

META = ".lockgate-version.json"
DERIVED = ".lockgate-derived"
ProgressCallback = Callable[[int], None]


@dataclass
class FetchReport:
    key: str
    bytes_total: int = 0
    bytes_fetched: int = 0
    bytes_reused: int = 0
    files: int = 0
    seconds: float = 0.0
    cached: bool = False  # already complete: nothing fetched, nothing copied
    evicted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Target:
    """One place a chunk must be written: a file of the version being assembled."""

    rel: str
    offset: int


class ModelCache:
    def __init__(self, directory: Path | str, max_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        for sub in ("versions", "partial", "locks", "trash", "pins"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._pins: dict[str, int] = {}
        self._pin_lock = threading.Lock()
        self.leases = CacheLeases(self.directory)

    # -- bookkeeping ---------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        return self.directory / "versions" / key

    def derived_dir(self, key: str) -> Path:
        """Where artifacts derived from a complete version live: inside the version's own
        directory, so eviction (one rename of that directory) takes them along. The cache is
        the one owner of its directory; nothing else writes beside ``versions/``."""
        path = self.path_of(key) / DERIVED
        path.mkdir(exist_ok=True)
        return path

    def find_derived(self, relative: str) -> Path | None:
        """A derived artifact (``relative`` to a version's derived directory) that some complete
        version already holds: profiles are per dataset commit, so versions trained on the same
        data share the work, while each copy still belongs to (and is evicted with) one version."""
        for meta in (self.directory / "versions").glob(f"*/{META}"):
            candidate = meta.parent / DERIVED / relative
            if candidate.is_file():
                return candidate
        return None

    def is_complete(self, key: str) -> bool:
        return (self.path_of(key) / META).is_file()

    def metadata(self, key: str) -> dict[str, Any]:
        return dict(orjson.loads((self.path_of(key) / META).read_bytes()))

    def held(self) -> dict[str, dict[str, Any]]:
        out = {}
        for entry in (self.directory / "versions").iterdir():
            try:
                out[entry.name] = dict(orjson.loads((entry / META).read_bytes()))
            except (OSError, ValueError):
                continue
        return out

    def used_bytes(self) -> int:
        return sum(int(m.get("size", 0)) for m in self.held().values())

    def pin(self, key: str) -> None:
        """Keep ``key`` from eviction (a live endpoint, or its rollback target). Counted."""
        with self._pin_lock:
            self._pins[key] = self._pins.get(key, 0) + 1
            first = self._pins[key] == 1
        if first:  # visible to every process on this cache directory
            self.leases.hold(key)

    def unpin(self, key: str) -> None:
        with self._pin_lock:
            count = self._pins.get(key, 0) - 1
            if count > 0:
                self._pins[key] = count
                return
            self._pins.pop(key, None)
        self.leases.release(key)

    @property
    def pinned(self) -> frozenset[str]:
        with self._pin_lock:
            return frozenset(self._pins)

    def _touch(self, key: str) -> None:
        # LRU order is the metadata file's mtime: cheap, shared by every process.
        os.utime(self.path_of(key) / META)

    def _lock(self, key: str) -> FileLock:
        return FileLock(str(self.directory / "locks" / f"{key}.lock"))

    # -- materialization -------------------------------------------------------------------

    def materialize(
        self, store_opener: Callable[[], Store], weights: WeightsLocation, *, progress: ProgressCallback | None = None
    ) -> tuple[Path, FetchReport]:
        """Return the local directory holding ``weights``' files, fetching what is missing."""
        key = weights.cache_key
        started = time.perf_counter()
        if self.is_complete(key):
            return self._hit(key, started)
        with self._lock(key):
            if self.is_complete(key):  # another process finished it while we waited
                return self._hit(key, started)
            try:
                if weights.in_store:
                    report = self._from_store(store_opener, weights, key, progress)
                else:
                    report = self._from_mlflow(weights, key)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFullError(
                        f"the cache disk at {self.directory} is full while fetching {weights.uri}"
                    ) from exc
                raise
        report.seconds = time.perf_counter() - started
        return self.path_of(key), report

    def adopt(
        self, weights: WeightsLocation, directory: Path, files: dict[str, dict[str, Any]]
    ) -> tuple[Path, FetchReport]:
        """Take a version's files from a materialized copy (``loader.materialized_copy``) instead
        of the store: each one is copied in and checked against the BLAKE3 its lineage file
        names, so nothing changed on the copy's volume is ever served."""
        key = weights.cache_key
        started = time.perf_counter()
        if self.is_complete(key):
            return self._hit(key, started)
        with self._lock(key):
            if self.is_complete(key):
                return self._hit(key, started)
            partial = self.directory / "partial" / key
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                pairs = [(contained(directory, rel), contained(partial, rel), meta) for rel, meta in files.items()]
            except InvalidPathError as exc:
                raise ArtifactIntegrityError(f"{directory}: refusing to adopt the copy: {exc}") from exc
            size = sum(int(meta["size"]) for meta in files.values())
            report = FetchReport(key, bytes_total=size, bytes_reused=size, files=len(files))
            report.evicted = self._make_room(size, keep=key)
            for source, target, meta in pairs:
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(source, target)
                except FileNotFoundError as exc:
                    raise ArtifactIntegrityError(f"{source} is missing from the materialized copy") from exc
                found = blake3_file(target)
                if found != meta["blake3"]:
                    raise ArtifactIntegrityError(
                        f"{source}: its BLAKE3 {found[:16]}... is not the {str(meta['blake3'])[:16]}... its lineage "
                        "file names: the copy changed after `lockgate materialize` wrote it; refusing to serve it"
                    )
            record: dict[str, Any] = {"key": key, "weights_uri": weights.uri, "commit": weights.commit,
                                      "path": weights.path, "size": size, "files": files, "chunks": [],
                                      "adopted_from": str(directory)}  # fmt: skip
            self._publish(partial, key, record)
        report.seconds = time.perf_counter() - started
        return self.path_of(key), report

    def _hit(self, key: str, started: float) -> tuple[Path, FetchReport]:
        self._touch(key)
        meta = self.metadata(key)
        size = int(meta.get("size", 0))
        report = FetchReport(key, bytes_total=size, bytes_reused=size, files=len(meta.get("files", {})), cached=True)
        report.seconds = time.perf_counter() - started
        return self.path_of(key), report

    def _from_store(
        self, store_opener: Callable[[], Store], weights: WeightsLocation, key: str, progress: ProgressCallback | None
    ) -> FetchReport:
        assert weights.commit is not None
        try:
            store = store_opener()
            files = store.list_files(weights.commit, weights.path)
            manifests = {
                rel_path(p, weights.path): (e.manifest_id, store.manifest(e.manifest_id)) for p, e in files.items()
            }
        except NotFoundError as exc:
            raise NoArtifactsError(f"no model files at {weights.uri}: {exc}") from exc
        except IntegrityError as exc:
            raise ArtifactIntegrityError(f"{weights.uri}: {exc}") from exc
        except StoreError as exc:
            raise StoreUnavailableError(f"cannot read {weights.uri} from the store: {exc}") from exc
        partial = self.directory / "partial" / key
        try:
            # Tree paths were checked when the tree was decoded; every target is checked again
            # against the directory it must stay in, before a single byte is written.
            targets = {rel: contained(partial, rel) for rel in manifests}
        except InvalidPathError as exc:
            raise ArtifactIntegrityError(f"{weights.uri}: refusing to materialize: {exc}") from exc

        total = sum(m.size for _, m in manifests.values())
        report = FetchReport(key, bytes_total=total, files=len(manifests))
        report.evicted = self._make_room(total, keep=key)

        resuming = partial.exists()
        partial.mkdir(parents=True, exist_ok=True)
        needed: dict[str, tuple[ChunkRef, list[_Target]]] = {}
        for rel, (_mid, manifest) in manifests.items():
            path = targets[rel]
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:  # create without truncating: resume keeps what is there
                fh.truncate(manifest.size)
            for ref, offset in chunk_offsets(manifest):
                needed.setdefault(ref.chunk_id, (ref, []))[1].append(_Target(rel, offset))

        # 1. Chunks already written to the partial copy by an interrupted attempt.
        if resuming:
            report.bytes_reused += self._verify_in_place(partial, needed)
        # 2. Chunks held by complete versions: copy locally, verified.
        report.bytes_reused += self._copy_local(partial, needed, exclude=key)
        # 3. The rest from the store: coalesced, parallel, verified ranged reads.
        refs = [ref for ref, _ in needed.values()]
        try:
            handles: dict[str, int] = {}
            try:
                for ref, raw in store.fetch_chunks(refs, progress=progress):
                    for target in needed[ref.chunk_id][1]:
                        fd = handles.get(target.rel)
                        if fd is None:
                            fd = handles[target.rel] = os.open(partial / target.rel, os.O_WRONLY)
                        os.pwrite(fd, raw, target.offset)
                    report.bytes_fetched += ref.length * len(needed[ref.chunk_id][1])
            finally:
                for fd in handles.values():
                    os.close(fd)
        except IntegrityError as exc:
            raise ArtifactIntegrityError(f"{weights.uri}: {exc}") from exc
        except BackendError as exc:
            raise StoreUnavailableError(f"store unreachable while fetching {weights.uri}: {exc}") from exc

        for rel, (_mid, manifest) in manifests.items():
            digest = blake3_file(partial / rel)
            if digest != manifest.blake3:
                raise ArtifactIntegrityError(
                    f"{weights.uri}: assembled file {rel!r} does not match its BLAKE3 {manifest.blake3}"
                )
        self._publish(
            partial,
            key,
            {
                "key": key,
                "weights_uri": weights.uri,
                "commit": weights.commit,
                "path": weights.path,
                "size": total,
                "files": {
                    rel: {"manifest": mid, "size": m.size, "blake3": m.blake3} for rel, (mid, m) in manifests.items()
                },
                "chunks": [
                    [ref.chunk_id, ref.length, t.rel, t.offset]
                    for ref, targets in _all_chunks(manifests)
                    for t in targets
                ],
            },
        )
        return report

    def _verify_in_place(self, partial: Path, needed: dict[str, tuple[ChunkRef, list[_Target]]]) -> int:
        """Drop from ``needed`` every chunk whose bytes are already right at all its targets."""
        reused = 0
        for cid in list(needed):
            ref, targets = needed[cid]
            if all(_chunk_at(partial / t.rel, t.offset, ref.length) == cid for t in targets):
                reused += ref.length * len(targets)
                del needed[cid]
        return reused

    def _copy_local(self, partial: Path, needed: dict[str, tuple[ChunkRef, list[_Target]]], exclude: str) -> int:
        if not needed:
            return 0
        copied = 0
        for key, meta in self.held().items():
            if key == exclude or not needed:
                continue
            base = self.path_of(key)
            for cid, length, rel, offset in meta.get("chunks", []):
                if cid not in needed:
                    continue
                try:
                    # The metadata sits on a volume other processes share: never trust its paths.
                    with open(contained(base, rel), "rb") as fh:
                        fh.seek(offset)
                        raw = fh.read(length)
                except (OSError, InvalidPathError):
                    continue
                if len(raw) != length or compute_chunk_id(raw) != cid:
                    continue  # a damaged local copy is never trusted; fetch instead
                ref, targets = needed.pop(cid)
                for target in targets:
                    fd = os.open(partial / target.rel, os.O_WRONLY)
                    try:
                        os.pwrite(fd, raw, target.offset)
                    finally:
                        os.close(fd)
                copied += ref.length * len(targets)
        return copied

    def _from_mlflow(self, weights: WeightsLocation, key: str) -> FetchReport:
        """A version whose files are in MLflow's own artifact store: downloaded whole."""
        import mlflow
        from mlflow.exceptions import MlflowException

        partial = self.directory / "partial" / key
        staging = self.directory / "partial" / f"{key}.download"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            # MLflow puts the files under the URI's last path segment; move that directory.
            local = mlflow.artifacts.download_artifacts(artifact_uri=weights.artifact_uri, dst_path=str(staging))
        except MlflowException as exc:
            raise StoreUnavailableError(f"cannot download {weights.artifact_uri} through MLflow: {exc}") from exc
        local_path = Path(local)
        if local_path.is_file():
            partial.mkdir()
            os.rename(local_path, partial / local_path.name)
        else:
            os.rename(local_path, partial)
        shutil.rmtree(staging, ignore_errors=True)
        files = {p.relative_to(partial).as_posix(): p for p in partial.rglob("*") if p.is_file()}
        if not files:
            raise NoArtifactsError(f"no model files at {weights.artifact_uri}")
        size = sum(p.stat().st_size for p in files.values())
        report = FetchReport(key, bytes_total=size, bytes_fetched=size, files=len(files))
        report.evicted = self._make_room(size, keep=key)
        self._publish(
            partial,
            key,
            {
                "key": key,
                "weights_uri": weights.artifact_uri,
                "commit": None,
                "path": "",
                "size": size,
                "files": {rel: {"size": p.stat().st_size, "blake3": blake3_file(p)} for rel, p in files.items()},
                "chunks": [],
            },
        )
        return report

    def _publish(self, partial: Path, key: str, meta: dict[str, Any]) -> None:
        tmp = partial / f"{META}.tmp"
        tmp.write_bytes(orjson.dumps(meta))
        os.replace(tmp, partial / META)
        target = self.path_of(key)
        if target.exists() and not self.is_complete(key):
            # A directory without the version's metadata is no version: the leftover of an
            # interrupted eviction, or a derived artifact written after its version was evicted.
            # Nothing in it was ever served; set it aside so the verified files take its place.
            os.rename(target, self.directory / "trash" / f"{key}-stray-{uuid.uuid4().hex[:8]}")
        os.rename(partial, target)

    # -- eviction ----------------------------------------------------------------------------

    def _make_room(self, incoming: int, keep: str) -> list[str]:
        """Evict least-recently-used, unpinned versions until ``incoming`` bytes fit."""
        if self.max_bytes is None:
            return []
        if incoming > self.max_bytes:
            raise CacheFullError(
                f"a version of {incoming:,} bytes cannot fit in a cache bounded to {self.max_bytes:,} bytes "
                "(raise LOCKGATE_CACHE_MAX_BYTES)"
            )
        held = self.held()
        used = sum(int(m.get("size", 0)) for m in held.values())
        evicted: list[str] = []
        pinned = self.pinned
        by_age = sorted(held, key=lambda k: (self.path_of(k) / META).stat().st_mtime)
        elsewhere: list[str] = []
        for key in by_age:
            if used + incoming <= self.max_bytes:
                break
            if key in pinned or key == keep:
                continue
            if not self._evict_unless_leased(key):
                elsewhere.append(key)  # another process serves it
                continue
            used -= int(held[key].get("size", 0))
            evicted.append(key)
        if used + incoming > self.max_bytes:
            raise CacheFullError(
                f"cannot fit {incoming:,} more bytes under the {self.max_bytes:,}-byte cache bound: "
                f"{used:,} bytes are held by versions this process pins ({', '.join(sorted(pinned)) or 'none'})"
                f" or other processes serve ({', '.join(sorted(elsewhere)) or 'none'})"
            )
        return evicted

    def _evict_unless_leased(self, key: str) -> bool:
        """Evict ``key`` unless another process holds a lease on it (checked under its lock)."""
        with self._lock(key):
            if self.leases.held_elsewhere(key):
                return False
            trash = self._set_aside(key)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return True

    def evict(self, key: str) -> None:
        with self._lock(key):
            trash = self._set_aside(key)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def _set_aside(self, key: str) -> Path | None:
        """Move a version into the trash (the caller holds its lock): one rename, so a reader
        never sees a half-deleted version. None if it is not held."""
        source = self.path_of(key)
        if not source.exists():
            return None
        trash = self.directory / "trash" / f"{key}-{uuid.uuid4().hex[:8]}"
        os.rename(source, trash)
        return trash


def rel_path(full: str, base: str) -> str:
    if not base:
        return full
    if full == base:
        return full.rsplit("/", 1)[-1]
    return full[len(base) + 1 :]


def chunk_offsets(manifest: Manifest) -> list[tuple[ChunkRef, int]]:
    out = []
    pos = 0
    for ref in manifest.chunks:
        out.append((ref, pos))
        pos += ref.length
    return out


def _all_chunks(manifests: dict[str, tuple[str, Manifest]]) -> list[tuple[ChunkRef, list[_Target]]]:
    out = []
    for rel, (_mid, manifest) in manifests.items():
        for ref, offset in chunk_offsets(manifest):
            out.append((ref, [_Target(rel, offset)]))
    return out


def _chunk_at(path: Path, offset: int, length: int) -> str | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(length)
    except OSError:
        return None
    if len(raw) != length:
        return None
    return compute_chunk_id(raw)


def blake3_file(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if path.stat().st_size:  # mmap cannot map an empty file
        hasher.update_mmap(str(path))
    return hasher.hexdigest()
