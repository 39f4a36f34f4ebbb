"""``lockgate import``: copy a version that lives in MLflow's artifact store into the store,
and pin the version to the commit, so later deploys of it are delta-fetched and verified."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from lockgate.loader.artifact_repository import COMMIT_TAG, URI_TAG
from lockgate.loader.errors import StoreUnavailableError
from lockgate.loader.registry import Resolver
from lockgate.store import PushResult, Store, StoreError, StoreURI


@dataclass(frozen=True)
class ImportResult:
    model_uri: str
    pinned_uri: str
    already_in_store: bool
    push: PushResult | None


def import_model(resolver: Resolver, store: Store, model_uri: str, target: StoreURI) -> ImportResult:
    resolved = resolver.resolve(model_uri)
    if resolved.weights.in_store:
        return ImportResult(model_uri, resolved.weights.uri, True, None)
    with tempfile.TemporaryDirectory(prefix="lockgate-import-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.weights.artifact_uri, dst_path=tmp, tracking_uri=resolver.tracking_uri
            )
        except MlflowException as exc:
            raise StoreUnavailableError(f"cannot download {resolved.weights.artifact_uri}: {exc}") from exc
        try:
            push = store.push(
                Path(local),
                target.repo,
                target.ref.name,
                target.path,
                message=f"import {model_uri} (version {resolved.version or '-'})",
                metadata={"mlflow.source": resolved.weights.artifact_uri or ""},
            )
        except StoreError as exc:
            raise StoreUnavailableError(f"cannot write {target} to the store: {exc}") from exc
    pinned = f"lockgate://{target.repo}@{push.commit_id}/{target.path}"
    client = resolver.client
    if resolved.name and resolved.version:
        client.set_model_version_tag(resolved.name, resolved.version, URI_TAG, pinned)
        client.set_model_version_tag(resolved.name, resolved.version, COMMIT_TAG, push.commit_id)
    elif resolved.logged_model_id:
        client.set_logged_model_tags(resolved.logged_model_id, {URI_TAG: pinned, COMMIT_TAG: push.commit_id})
    return ImportResult(model_uri, pinned, False, push)
