"""Resolving any model URI to one immutable version, through a real MLflow registry.

Only registry facts are gathered here (name, version, run, weights location, lineage tags);
nothing is downloaded. That keeps a cached version deployable while the store is down.

Two readers gather them (``loader/registry_facts.py``): a local sqlite registry is read
directly where that is exactly MLflow's answer (``loader/sqlite_registry.py``, which spares a
cold start MLflow's SQLAlchemy client); everything else, and every error, is MLflow's client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lockgate.loader.artifact_repository import URI_TAG
from lockgate.loader.errors import (
    ArtifactIntegrityError,
    LoaderError,
    ModelNotFoundError,
    NoArtifactsError,
    RegistryUnavailableError,
    StoreUnavailableError,
)
from lockgate.loader.lineage import CODE_COMMIT_TAG, dataset_uris, pin_dataset_uris
from lockgate.loader.mlflow_reads import MlflowReads, is_unreachable
from lockgate.loader.model_uri import ModelRef, parse_model_uri
from lockgate.loader.registry_facts import LoggedModelFacts, RunFacts, VersionFacts, logged_model_facts
from lockgate.loader.resolved import ResolvedModel, WeightsLocation
from lockgate.loader.sqlite_registry import Declined, SqliteRegistry
from lockgate.store import Store, is_store_uri, parse_uri
from lockgate.store.errors import BackendError, IntegrityError, NotFoundError, StoreError
from lockgate.store.ids import is_full_id

_log = logging.getLogger(__name__)


StoreOpener = Callable[[], Store]
_DIRECT_KINDS = frozenset({"stage", "alias", "latest", "version", "logged"})


class RegistryReads(Protocol):
    def model_version(self, ref: ModelRef) -> VersionFacts: ...
    def logged_model(self, model_id: str) -> LoggedModelFacts: ...
    def run(self, run_id: str) -> RunFacts | None: ...


class Resolver:
    def __init__(
        self,
        open_store: StoreOpener,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        *,
        direct_read: bool = True,
    ) -> None:
        self._open_store = open_store
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client: MlflowClient | None = None
        # None where the registry is not a local sqlite file (or direct reads are turned off).
        self.direct = SqliteRegistry.for_uris(self.registry_uri, self.tracking_uri) if direct_read else None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def _store(self) -> Store:
        try:
            return self._open_store()
        except StoreError as exc:
            raise StoreUnavailableError(f"cannot open the store: {exc}") from exc

    @contextmanager
    def _registry(self, what: str) -> Iterator[None]:
        try:
            yield
        except LoaderError:
            raise
        except Exception as exc:
            if is_unreachable(exc):
                raise RegistryUnavailableError(
                    f"MLflow registry at {self._where()} is unreachable while {what}: {exc}"
                ) from exc
            raise

    def _where(self) -> str:
        return self.registry_uri or "the default MLflow tracking URI"

    # -- public --------------------------------------------------------------------------

    def resolve(self, uri: str) -> ResolvedModel:
        ref = parse_model_uri(uri)
        if ref.kind == "store":
            return self._resolve_store(ref)
        if self.direct is not None and ref.kind in _DIRECT_KINDS:
            try:
                return self._resolve_registered(ref, self.direct)
            except Declined as why:
                # MLflow's client answers instead: its answer, or its error with its listing.
                _log.debug("lockgate: reading %s through MLflow's client: %s", uri, why)
        with self._registry(f"resolving {uri}"):
            if ref.kind == "run":
                return self._resolve_run(ref)
            return self._resolve_registered(ref, MlflowReads(self.client, self._where()))

    # -- registry versions ---------------------------------------------------------------

    def _resolve_registered(self, ref: ModelRef, reads: RegistryReads) -> ResolvedModel:
        if ref.kind == "logged":
            return self._from_logged_model(ref, reads.logged_model(str(ref.selector)), reads, name=None, version=None)
        mv = reads.model_version(ref)
        if URI_TAG in mv.tags:  # pinned by `lockgate import`
            weights = self._weights_from_uri(mv.tags[URI_TAG])
            return self._finish(ref, weights, reads, name=mv.name, version=mv.version, run_id=mv.run_id,
                                tag_sets=[mv.tags])  # fmt: skip
        if mv.source.startswith("models:/m-"):
            logged = reads.logged_model(mv.source.removeprefix("models:/").strip("/"))
            return self._from_logged_model(
                ref, logged, reads, name=mv.name, version=mv.version, extra_tags=[mv.tags], run_id=mv.run_id
            )
        weights = self._weights_from_uri(mv.download_uri)
        return self._finish(ref, weights, reads, name=mv.name, version=mv.version, run_id=mv.run_id,
                            tag_sets=[mv.tags])  # fmt: skip

    def _from_logged_model(
        self,
        ref: ModelRef,
        logged: LoggedModelFacts,
        reads: RegistryReads,
        *,
        name: str | None,
        version: str | None,
        extra_tags: list[dict[str, str]] | None = None,
        run_id: str | None = None,
    ) -> ResolvedModel:
        pinned = logged.tags.get(URI_TAG)
        weights = self._weights_from_uri(pinned or logged.artifact_location)
        resolved = self._finish(
            ref,
            weights,
            reads,
            name=name or logged.name,
            version=version,
            run_id=run_id or logged.source_run_id,
            tag_sets=[logged.tags, *(extra_tags or [])],
        )
        return ResolvedModel(**{**resolved.__dict__, "logged_model_id": logged.model_id})

    def _resolve_run(self, ref: ModelRef) -> ResolvedModel:
        reads = MlflowReads(self.client, self._where())
        try:
            run = self.client.get_run(str(ref.run_id))
        except MlflowException as exc:
            if is_unreachable(exc):
                raise
            raise ModelNotFoundError(f"no run {ref.run_id!r} in {self._where()}") from exc
        # MLflow 3 logs models as LoggedModels; runs:/RUN/NAME means the run's model NAME.
        if ref.path:
            found = self.client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"source_run_id='{ref.run_id}' AND name='{ref.path}'",
            )
            if found:
                return self._from_logged_model(ref, logged_model_facts(found[0]), reads, name=None, version=None)
        artifact_uri = run.info.artifact_uri.rstrip("/") + (f"/{ref.path}" if ref.path else "")
        weights = self._weights_from_uri(artifact_uri)
        return self._finish(ref, weights, reads, run_id=run.info.run_id)

    # -- store ---------------------------------------------------------------------------

    def _resolve_store(self, ref: ModelRef) -> ResolvedModel:
        assert ref.store_uri is not None
        return self._finish(ref, self._weights_from_uri(ref.uri))

    def _weights_from_uri(self, uri: str) -> WeightsLocation:
        if not is_store_uri(uri):
            return WeightsLocation(commit=None, path="", artifact_uri=uri)
        target = parse_uri(uri)
        if target.ref.back == 0 and target.at is None and is_full_id(target.ref.name):
            # Already pinned: no store round trip, so a cached version deploys with the store down.
            return WeightsLocation(commit=target.ref.name, path=target.path, repo=target.repo)
        store = self._store()
        try:
            # A moving ref: the newest commit that wrote these files is the version's pin.
            named = store.resolve_uri(target)  # @{TIME} and ~N included
            commit = store.last_commit_touching(target.repo, named, target.path)
        except NotFoundError as exc:
            raise NoArtifactsError(f"no model files at {uri}: {exc}") from exc
        except IntegrityError as exc:
            raise ArtifactIntegrityError(f"{uri}: {exc}") from exc
        except BackendError as exc:
            raise StoreUnavailableError(f"store unreachable while resolving {uri}: {exc}") from exc
        return WeightsLocation(commit=commit, path=target.path, repo=target.repo)

    def _finish(
        self,
        ref: ModelRef,
        weights: WeightsLocation,
        reads: RegistryReads | None = None,
        *,
        name: str | None = None,
        version: str | None = None,
        run_id: str | None = None,
        tag_sets: list[dict[str, str]] | None = None,
    ) -> ResolvedModel:
        run = reads.run(run_id) if reads is not None and run_id else None
        run_tags = run.tags if run is not None else {}
        uris = dataset_uris(run.dataset_sources if run is not None else (), [run_tags, *(tag_sets or [])])
        commits: list[str] = []
        pinned: list[str] = []
        notes: list[str] = []
        if uris:
            commits, pinned, notes = pin_dataset_uris(uris, lambda uri: self._store().resolve_uri(uri))
        evaluation = dataset_uris(run.evaluation_sources) if run is not None else []
        evaluation_pinned: list[str] = []
        if evaluation:
            _commits, evaluation_pinned, _notes = pin_dataset_uris(
                evaluation[:1], lambda uri: self._store().resolve_uri(uri)
            )
        return ResolvedModel(
            uri=ref.uri,
            reference=ref.kind,
            moves=ref.moves,
            name=name,
            version=version,
            run_id=run_id,
            weights=weights,
            dataset_commits=tuple(commits),
            dataset_uris=tuple(pinned),
            code_commit=run_tags.get(CODE_COMMIT_TAG) if run is not None else None,
            notes=tuple(notes),
            evaluation_uri=evaluation_pinned[0] if evaluation_pinned else None,
        )
