"""The ``lockgate`` dataset source for MLflow (entry point group ``mlflow.dataset_source``).

``mlflow.data.from_pandas(df, source="lockgate://datasets@main/train.csv")`` works once
lockgate is installed. A source that names a branch (or ``~N``) is pinned to the commit it
resolves to at that moment, so what ``mlflow.log_input`` records on the run is immutable
lineage: ``lockgate://datasets@<commit>/train.csv``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.exceptions import MlflowException

from lockgate.loader.store_config import open_configured_store
from lockgate.loader.store_reader import StoreReader
from lockgate.store import StoreError, is_store_uri


class LockgateDatasetSource(DatasetSource):
    def __init__(self, uri: str) -> None:
        self._uri = uri

    @property
    def uri(self) -> str:
        return self._uri

    @staticmethod
    def _get_source_type() -> str:
        return "lockgate"

    def load(self, dst_path: str | None = None) -> str:
        """Check the data out of the store (verified) and return its local path."""
        dest = Path(dst_path or tempfile.mkdtemp(prefix="lockgate-dataset-"))
        try:
            reader = StoreReader(open_configured_store())
            pinned = reader.pin(self._uri)
            report = reader.checkout(pinned, dest)
            is_file = reader.entry(pinned) is not None
        except StoreError as exc:
            raise MlflowException(f"cannot load dataset {self._uri}: {exc}") from exc
        return str(dest / report.paths[0]) if is_file and len(report.paths) == 1 else str(dest)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return isinstance(raw_source, str) and is_store_uri(raw_source)

    @classmethod
    def _resolve(cls, raw_source: Any) -> LockgateDatasetSource:
        try:
            reader = StoreReader(open_configured_store())
            pinned = reader.pin(str(raw_source))  # branch, tag, prefix, ~N or @{TIME}: one commit
            reader.store.list_files(pinned.commit, pinned.uri.path)  # the data must exist
        except StoreError as exc:
            raise MlflowException(f"cannot use {raw_source!r} as a dataset source: {exc}") from exc
        return cls(pinned.pinned_uri)

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self._uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> LockgateDatasetSource:
        uri = source_dict.get("uri")
        if not isinstance(uri, str):
            raise MlflowException(f"a lockgate dataset source needs a 'uri', got {source_dict!r}")
        return cls(uri)


def _retire_generated_artifact_source() -> None:
    """MLflow makes a generic ``LockgateArtifactDatasetSource`` from lockgate's artifact
    repository plugin, so every ``lockgate://`` source would match two classes and warn "can be
    interpreted in multiple ways". This class is the one that pins commits: drop the other.

    Runs when this module is first imported: either from inside MLflow's registry setup (entry
    point loading, after the generic sources exist), or before MLflow's registry exists."""
    import mlflow.data.dataset_source_registry as registry_module

    registry = getattr(registry_module, "_dataset_source_registry", None)
    if registry is None:
        return
    registry.sources[:] = [
        source
        for source in registry.sources
        if source is LockgateDatasetSource or source.__name__ != "LockgateArtifactDatasetSource"
    ]
    # Imported before MLflow's registry, this module was still half-defined when the registry
    # loaded its entry point, so the registry skipped it: register it now.
    # (While the registry module is still initializing, it is the one loading us, and it
    # registers this class itself once the import returns.)
    initializing = getattr(getattr(registry_module, "__spec__", None), "_initializing", False)
    if not initializing and LockgateDatasetSource not in registry.sources:
        registry.register(LockgateDatasetSource)


_retire_generated_artifact_source()
