"""A read-only, direct read of a local sqlite MLflow registry: the embedded default's fast path.

Why: building MLflow's client on a ``sqlite:///`` URI imports SQLAlchemy and alembic, maps
about fifty ORM classes and loads every migration script to check the schema. That is 0.4-1.5 s
of a cold ``lockgate serve``, most of its registry time, to answer three or four primary-key
lookups. This module answers those lookups with the standard library's ``sqlite3``, in one read
transaction (so one consistent snapshot, which MLflow's separate sessions do not give).

Only where it is exactly MLflow's answer:

- the database's alembic revision must be the head of the installed MLflow's migrations
  (``KNOWN_SCHEMA_HEADS``, held against MLflow's own migrations by a test); any other revision,
  a missing file, MLflow workspaces turned on, or an unexpected table raises ``Declined``;
- anything MLflow would refuse or explain (a missing model, alias, version or logged model, an
  unknown stage) raises ``Declined`` too, and the resolver asks MLflow's client, so every error
  text and listing is MLflow's own;
- the queries are MLflow's: deleted versions are skipped, stages are MLflow's canonical ones,
  the download URI is the storage location or else the source, and a run's dataset inputs come
  in the order MLflow's query gives them.

Writes never come here; they go through MLflow.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import mlflow

from lockgate.loader.model_uri import ModelRef
from lockgate.loader.registry_facts import CONTEXT_TAG, EVALUATION_CONTEXTS, LoggedModelFacts, RunFacts, VersionFacts

# The head of each supported MLflow's migration chain (mlflow/store/db_migrations/versions).
# MLflow itself refuses a database at any other revision, so this reader does too.
KNOWN_SCHEMA_HEADS = {
    (3, 17): "dc11669786a5",
    (3, 18): "f4a9b2c7d1e6",
}
_DEFAULT_WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME
_DELETED_INTERNAL = "Deleted_Internal"  # MLflow's stage for a deleted version


class Declined(Exception):
    """This reader cannot give MLflow's exact answer; ask MLflow's client."""


def _installed_mlflow() -> tuple[int, int]:
    major, minor = mlflow.__version__.split(".")[:2]
    return int(major), int(minor)


def sqlite_path(uri: str | None) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI, or None for any other URI (or a query string)."""
    if not uri or not uri.startswith("sqlite:///") or "?" in uri:
        return None
    raw = uri.removeprefix("sqlite:///")
    return Path(raw) if raw and raw != ":memory:" else None


class SqliteRegistry:
    """One registry database (and its tracking database, often the same file), read directly."""

    def __init__(self, registry_db: Path, tracking_db: Path) -> None:
        self.registry_db = registry_db
        self.tracking_db = tracking_db

    @classmethod
    def for_uris(cls, registry_uri: str | None, tracking_uri: str | None) -> SqliteRegistry | None:
        """A reader when both URIs name local sqlite files, else None (MLflow's client reads)."""
        registry_db, tracking_db = sqlite_path(registry_uri), sqlite_path(tracking_uri)
        if registry_db is None or tracking_db is None:
            return None
        if os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("true", "1"):
            return None  # the active workspace is MLflow's to decide
        return cls(registry_db, tracking_db)

    # -- connection ------------------------------------------------------------------------

    def _connect(self, path: Path) -> sqlite3.Connection:
        if not path.is_file():
            raise Declined(f"{path} does not exist (MLflow would create it)")
        head = KNOWN_SCHEMA_HEADS.get(_installed_mlflow())
        if head is None:
            raise Declined(f"MLflow {mlflow.__version__}'s schema is not known to this reader")
        try:
            # Read-only and shared with writers: never takes a write lock, never creates a file.
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise Declined(f"cannot open {path}: {exc}") from exc
        try:
            connection.execute("BEGIN")  # one snapshot for every read of this resolve
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error as exc:
            connection.close()
            raise Declined(f"{path} is not an MLflow database: {exc}") from exc
        if row is None or row[0] != head:
            connection.close()
            raise Declined(f"{path} is at schema {row and row[0]!r}, MLflow {mlflow.__version__} expects {head!r}")
        return connection

    def _query(self, path: Path, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with closing(self._connect(path)) as connection:
            try:
                return connection.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise Declined(f"unexpected registry schema in {path}: {exc}") from exc

    # -- registry --------------------------------------------------------------------------

    def model_version(self, ref: ModelRef) -> VersionFacts:
        """The version a ``models:/NAME/...`` reference names, read in one transaction."""
        name = str(ref.name)
        with closing(self._connect(self.registry_db)) as connection:
            try:
                return self._model_version(connection, ref, name)
            except sqlite3.Error as exc:
                raise Declined(f"unexpected registry schema in {self.registry_db}: {exc}") from exc

    def _model_version(self, connection: sqlite3.Connection, ref: ModelRef, name: str) -> VersionFacts:
        known = connection.execute(
            "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (_DEFAULT_WORKSPACE, name)
        ).fetchone()
        if known is None:
            raise Declined(f"no registered model {name!r}")
        live = "workspace = ? AND name = ? AND current_stage != ?"
        args: tuple[object, ...] = (_DEFAULT_WORKSPACE, name, _DELETED_INTERNAL)
        if ref.kind == "latest" or (ref.kind == "alias" and str(ref.selector).lower() == "latest"):
            # MLflow's own rule: @latest (any case) is the highest live version, alias or not.
            row = connection.execute(f"SELECT MAX(version) FROM model_versions WHERE {live}", args).fetchone()
            if row is None or row[0] is None:
                raise Declined("no versions")
            version = int(row[0])
        elif ref.kind == "alias":
            row = connection.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?",
                (_DEFAULT_WORKSPACE, name, str(ref.selector)),
            ).fetchone()
            if row is None:
                raise Declined(f"no alias {ref.selector!r}")
            version = int(row[0])
        elif ref.kind == "stage":
            stage = _canonical_stage(str(ref.selector))
            row = connection.execute(
                f"SELECT MAX(version) FROM model_versions WHERE {live} AND current_stage = ?", (*args, stage)
            ).fetchone()
            if row is None or row[0] is None:
                raise Declined(f"no version in stage {stage!r}")
            version = int(row[0])
        elif ref.kind == "version":
            try:
                version = int(str(ref.selector))
            except ValueError as exc:
                raise Declined(f"version {ref.selector!r} is not a number") from exc
        else:
            raise Declined(f"{ref.kind} references are not registry versions")
        found = connection.execute(
            f"SELECT name, version, source, run_id, storage_location FROM model_versions WHERE {live} AND version = ?",
            (*args, version),
        ).fetchone()
        if found is None:
            raise Declined(f"no version {version}")
        tags = connection.execute(
            'SELECT "key", value FROM model_version_tags WHERE workspace = ? AND name = ? AND version = ?',
            (_DEFAULT_WORKSPACE, name, version),
        ).fetchall()
        found_name, found_version, source, run_id, storage_location = found
        return VersionFacts(
            name=str(found_name),
            version=str(found_version),
            source=str(source or ""),
            run_id=str(run_id) if run_id else None,
            download_uri=str(storage_location or source or ""),
            tags={str(key): str(value) for key, value in tags if value is not None},
        )

    # -- tracking --------------------------------------------------------------------------

    def logged_model(self, model_id: str) -> LoggedModelFacts:
        rows = self._query(
            self.tracking_db,
            "SELECT m.model_id, m.name, m.artifact_location, m.source_run_id, t.tag_key, t.tag_value "
            "FROM logged_models m LEFT OUTER JOIN logged_model_tags t ON t.model_id = m.model_id "
            "WHERE m.model_id = ? AND m.lifecycle_stage != 'deleted'",
            (model_id,),
        )
        if not rows:
            raise Declined(f"no logged model {model_id!r}")
        found_id, name, artifact_location, source_run_id = rows[0][:4]
        return LoggedModelFacts(
            model_id=str(found_id),
            name=str(name),
            artifact_location=str(artifact_location),
            source_run_id=str(source_run_id) if source_run_id else None,
            tags={str(key): str(value) for *_, key, value in rows if key is not None},
        )

    def run(self, run_id: str) -> RunFacts | None:
        """A run's lineage facts, or None where MLflow's get_run would say it does not exist."""
        with closing(self._connect(self.tracking_db)) as connection:
            try:
                if connection.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is None:
                    return None
                tags = connection.execute('SELECT "key", value FROM tags WHERE run_uuid = ?', (run_id,)).fetchall()
                # MLflow's _get_run_inputs query, so the inputs come in MLflow's order.
                inputs = connection.execute(
                    "SELECT d.dataset_uuid, d.dataset_source, t.name, t.value FROM inputs i "
                    "JOIN datasets d ON i.source_id = d.dataset_uuid "
                    "LEFT OUTER JOIN input_tags t ON t.input_uuid = i.input_uuid "
                    "WHERE i.destination_type = 'RUN' AND i.destination_id IN (?) ORDER BY i.destination_id",
                    (run_id,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise Declined(f"unexpected tracking schema in {self.tracking_db}: {exc}") from exc
        sources: dict[str, str] = {}
        evaluation: dict[str, str] = {}
        for dataset_uuid, source, tag, value in inputs:
            sources.setdefault(str(dataset_uuid), str(source or ""))
            if tag == CONTEXT_TAG and str(value).lower() in EVALUATION_CONTEXTS and source:
                evaluation.setdefault(str(dataset_uuid), str(source))
        return RunFacts(
            run_id=run_id,
            tags={str(key): str(value) for key, value in tags if value is not None},
            dataset_sources=tuple(source for source in sources.values() if source),
            evaluation_sources=tuple(evaluation.values()),
        )


def _canonical_stage(stage: str) -> str:
    """MLflow's canonical stage name, or Declined for one MLflow would refuse (with its own message)."""
    from mlflow.entities.model_registry.model_version_stages import ALL_STAGES

    for known in ALL_STAGES:
        if known.lower() == stage.lower():
            return known
    raise Declined(f"{stage!r} is not an MLflow stage")
