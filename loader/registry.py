"""Resolving any model URI to one immutable version, through a real MLflow registry.

Only registry facts are gathered here (name, version, run, weights location, lineage tags);
nothing is downloaded. That keeps a cached version deployable while the store is down.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from loader.artifact_repository import URI_TAG
from loader.errors import (
    ArtifactIntegrityError,
    LoaderError,
    ModelNotFoundError,
    NoArtifactsError,
    RegistryUnavailableError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from loader.lineage import CODE_COMMIT_TAG, dataset_uris, pin_dataset_uris
from loader.model_uri import ModelRef, parse_model_uri
from loader.resolved import ResolvedModel, WeightsLocation
from store import Store, is_store_uri, parse_uri
from store.errors import BackendError, IntegrityError, NotFoundError, StoreError
from store.ids import is_full_id

StoreOpener = Callable[[], Store]
_UNREACHABLE_HINTS = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish",
    "timed out",
    "API request to",
)


_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}


def _is_unreachable(exc: BaseException) -> bool:
    """Whether an MLflow client error means the registry is down (not that it said no)."""
    if isinstance(exc, MlflowException) and exc.error_code in _UNAVAILABLE_CODES:
        return True  # e.g. a 5xx while the server shuts down or restarts
    text = str(exc)
    return any(hint in text for hint in _UNREACHABLE_HINTS) or "ConnectionError" in type(exc).__name__


class Resolver:
    def __init__(
        self, open_store: StoreOpener, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        self._open_store = open_store
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client: MlflowClient | None = None

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
        except MlflowException as exc:
            if _is_unreachable(exc):
                raise RegistryUnavailableError(
                    f"MLflow registry at {self._where()} is unreachable while {what}: {exc}"
                ) from exc
            raise
        except Exception as exc:
            if _is_unreachable(exc):
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
        if ref.kind == "logged":
            with self._registry(f"resolving {uri}"):
                return self._from_logged_model(ref, self._logged_model(str(ref.selector)), name=None, version=None)
        if ref.kind == "run":
            with self._registry(f"resolving {uri}"):
                return self._resolve_run(ref)
        with self._registry(f"resolving {uri}"):
            version = self._model_version(ref)
            return self._from_version(ref, version)

    # -- registry versions ---------------------------------------------------------------

    def _model_version(self, ref: ModelRef) -> Any:
        name = str(ref.name)
        client = self.client
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if _is_unreachable(exc) or exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            known = [m.name for m in client.search_registered_models(max_results=20)]
            raise ModelNotFoundError(
                f"no registered model {name!r} in {self._where()} (models: {', '.join(known) or 'none'})"
            ) from exc
        if ref.kind == "alias":
            try:
                return client.get_model_version_by_alias(name, str(ref.selector))
            except MlflowException as exc:
                if _is_unreachable(exc):
                    raise
                aliases = sorted(client.get_registered_model(name).aliases or {})
                raise VersionNotFoundError(
                    f"model {name!r} has no alias {ref.selector!r} (aliases: {', '.join(aliases) or 'none'})"
                ) from exc
        if ref.kind == "stage":
            with warnings.catch_warnings():
                # Stages are deprecated by MLflow but still what many teams deploy from.
                warnings.simplefilter("ignore", FutureWarning)
                found = client.get_latest_versions(name, stages=[str(ref.selector)])
            if not found:
                raise VersionNotFoundError(f"model {name!r} has no version in stage {ref.selector!r}")
            return max(found, key=lambda v: int(v.version))
        if ref.kind == "latest":
            found = client.search_model_versions(f"name='{name}'")
            if not found:
                raise VersionNotFoundError(f"model {name!r} has no versions yet")
            return max(found, key=lambda v: int(v.version))
        try:
            return client.get_model_version(name, str(ref.selector))
        except MlflowException as exc:
            if _is_unreachable(exc):
                raise
            raise VersionNotFoundError(f"model {name!r} has no version {ref.selector}") from exc

    def _logged_model(self, model_id: str) -> Any:
        try:
            return self.client.get_logged_model(model_id)
        except MlflowException as exc:
            if _is_unreachable(exc):
                raise
            raise ModelNotFoundError(f"no logged model {model_id!r} in {self._where()}") from exc

    def _from_version(self, ref: ModelRef, mv: Any) -> ResolvedModel:
        tags = dict(mv.tags or {})
        source = str(mv.source or "")
        if URI_TAG in tags:  # pinned by `lockgate import`
            weights = self._weights_from_uri(tags[URI_TAG])
            return self._finish(ref, weights, name=mv.name, version=str(mv.version), run_id=mv.run_id, tag_sets=[tags])
        if source.startswith("models:/m-"):
            logged = self._logged_model(source.removeprefix("models:/").strip("/"))
            return self._from_logged_model(
                ref, logged, name=mv.name, version=str(mv.version), extra_tags=[tags], run_id=mv.run_id
            )
        artifact_uri = self.client.get_model_version_download_uri(mv.name, mv.version)
        weights = self._weights_from_uri(artifact_uri)
        return self._finish(ref, weights, name=mv.name, version=str(mv.version), run_id=mv.run_id, tag_sets=[tags])

    def _from_logged_model(
        self,
        ref: ModelRef,
        logged: Any,
        *,
        name: str | None,
        version: str | None,
        extra_tags: list[dict[str, str]] | None = None,
        run_id: str | None = None,
    ) -> ResolvedModel:
        tags = dict(logged.tags or {})
        pinned = tags.get(URI_TAG)
        weights = self._weights_from_uri(pinned or str(logged.artifact_location))
        resolved = self._finish(
            ref,
            weights,
            name=name or logged.name,
            version=version,
            run_id=run_id or logged.source_run_id,
            tag_sets=[tags, *(extra_tags or [])],
        )
        return ResolvedModel(**{**resolved.__dict__, "logged_model_id": logged.model_id})

    def _resolve_run(self, ref: ModelRef) -> ResolvedModel:
        try:
            run = self.client.get_run(str(ref.run_id))
        except MlflowException as exc:
            if _is_unreachable(exc):
                raise
            raise ModelNotFoundError(f"no run {ref.run_id!r} in {self._where()}") from exc
        # MLflow 3 logs models as LoggedModels; runs:/RUN/NAME means the run's model NAME.
        if ref.path:
            found = self.client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"source_run_id='{ref.run_id}' AND name='{ref.path}'",
            )
            if found:
                return self._from_logged_model(ref, found[0], name=None, version=None)
        artifact_uri = run.info.artifact_uri.rstrip("/") + (f"/{ref.path}" if ref.path else "")
        weights = self._weights_from_uri(artifact_uri)
        return self._finish(ref, weights, run_id=run.info.run_id)

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
        *,
        name: str | None = None,
        version: str | None = None,
        run_id: str | None = None,
        tag_sets: list[dict[str, str]] | None = None,
    ) -> ResolvedModel:
        run = None
        if run_id:
            try:
                run = self.client.get_run(run_id)
            except MlflowException as exc:
                if _is_unreachable(exc):
                    raise
        uris = dataset_uris(run, tag_sets or [])
        commits: list[str] = []
        pinned: list[str] = []
        notes: list[str] = []
        if uris:
            commits, pinned, notes = pin_dataset_uris(uris, lambda uri: self._store().resolve_uri(uri))
        code_commit = None
        if run is not None:
            code_commit = (run.data.tags or {}).get(CODE_COMMIT_TAG)
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
            code_commit=code_commit,
            notes=tuple(notes),
        )
