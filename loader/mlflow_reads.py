"""Registry facts through MLflow's own client: any registry MLflow speaks to, with MLflow's errors."""

from __future__ import annotations

import warnings
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lockgate.loader.errors import ModelNotFoundError, VersionNotFoundError
from lockgate.loader.model_uri import ModelRef
from lockgate.loader.registry_facts import (
    LoggedModelFacts,
    RunFacts,
    VersionFacts,
    logged_model_facts,
    run_facts,
    version_facts,
)

_UNREACHABLE_HINTS = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish",
    "timed out",
    "API request to",
)
_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}


def is_unreachable(exc: BaseException) -> bool:
    """Whether an MLflow client error means the registry is down (not that it said no)."""
    if isinstance(exc, MlflowException) and exc.error_code in _UNAVAILABLE_CODES:
        return True  # e.g. a 5xx while the server shuts down or restarts
    text = str(exc)
    return any(hint in text for hint in _UNREACHABLE_HINTS) or "ConnectionError" in type(exc).__name__


class MlflowReads:
    def __init__(self, client: MlflowClient, where: str) -> None:
        self.client = client
        self._where = where

    def model_version(self, ref: ModelRef) -> VersionFacts:
        mv = self._model_version(ref)
        return version_facts(mv, self.client.get_model_version_download_uri(mv.name, mv.version))

    def _model_version(self, ref: ModelRef) -> Any:
        name = str(ref.name)
        client = self.client
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if is_unreachable(exc) or exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            known = [m.name for m in client.search_registered_models(max_results=20)]
            raise ModelNotFoundError(
                f"no registered model {name!r} in {self._where} (models: {', '.join(known) or 'none'})"
            ) from exc
        if ref.kind == "alias":
            try:
                return client.get_model_version_by_alias(name, str(ref.selector))
            except MlflowException as exc:
                if is_unreachable(exc):
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
            if is_unreachable(exc):
                raise
            raise VersionNotFoundError(f"model {name!r} has no version {ref.selector}") from exc

    def logged_model(self, model_id: str) -> LoggedModelFacts:
        try:
            return logged_model_facts(self.client.get_logged_model(model_id))
        except MlflowException as exc:
            if is_unreachable(exc):
                raise
            raise ModelNotFoundError(f"no logged model {model_id!r} in {self._where}") from exc

    def run(self, run_id: str) -> RunFacts | None:
        """A run's lineage facts, or None when the registry has no such run (lineage is then empty)."""
        try:
            return run_facts(self.client.get_run(run_id))
        except MlflowException as exc:
            if is_unreachable(exc):
                raise
            return None
