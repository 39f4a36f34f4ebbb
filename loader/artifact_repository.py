"""The ``lockgate://`` MLflow artifact repository.

With an experiment whose artifact location is ``lockgate://REPO@BRANCH/PREFIX``, every
``log_artifact(s)`` call becomes one store commit on BRANCH. After each write, the commit id
is recorded on the MLflow entity that owns the files (the LoggedModel or the run) as the tag
``lockgate.commit``, so a registry version can later be pinned to one immutable commit
without guessing.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mlflow.entities.file_info import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from lockgate.loader.store_config import open_configured_store
from lockgate.store import Store, StoreError, collect_files, parse_uri
from lockgate.store.errors import PathNotFoundError
from lockgate.store.uri import normalize_path

_log = logging.getLogger(__name__)

COMMIT_TAG = "lockgate.commit"
URI_TAG = "lockgate.uri"
_LOGGED_MODEL = re.compile(r"(?:^|/)models/(?P<id>m-[0-9a-f]{32})/artifacts(?:/|$)")
_RUN = re.compile(r"(?:^|/)(?P<id>[0-9a-f]{32})/artifacts(?:/|$)")


class LockgateArtifactRepository(ArtifactRepository):
    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        try:
            self._uri = parse_uri(artifact_uri)
        except StoreError as exc:
            raise MlflowException(f"invalid lockgate artifact URI: {exc}") from exc
        self._read_commit: str | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _store(self, create: bool = False) -> Store:
        try:
            return open_configured_store(create=create)
        except StoreError as exc:
            raise MlflowException(f"cannot open the lockgate store for {self.artifact_uri}: {exc}") from exc

    def _path(self, relative: str | None) -> str:
        return normalize_path(posixpath.join(self._uri.path, relative or ""))

    def _commit_for_reads(self, store: Store) -> str:
        if self._read_commit is None:
            self._read_commit = store.resolve(self._uri.repo, self._uri.ref)
        return self._read_commit

    def _commit(self, files: list[tuple[str, Path]], what: str) -> None:
        if self._uri.ref.back:
            raise MlflowException(
                f"cannot write to {self.artifact_uri}: {self._uri.ref} is a past commit, not a branch"
            )
        store = self._store(create=True)
        try:
            result = store.commit_files(
                self._uri.repo,
                self._uri.ref.name,
                files,
                message=f"mlflow: {what}",
                metadata={"mlflow.artifact_uri": self.artifact_uri},
            )
        except StoreError as exc:
            raise MlflowException(f"lockgate store write failed for {self.artifact_uri}: {exc}") from exc
        self._read_commit = result.commit_id
        self._record_commit(result.commit_id)

    def _record_commit(self, commit_id: str) -> None:
        """Tag the LoggedModel (or run) whose files these are with the commit they landed in.
        Best effort: the store itself can still answer with ``last_commit_touching``."""
        pinned = f"lockgate://{self._uri.repo}@{commit_id}/{self._uri.path}"
        tags = {COMMIT_TAG: commit_id, URI_TAG: pinned}
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            if match := _LOGGED_MODEL.search(self._uri.path + "/"):
                client.set_logged_model_tags(match.group("id"), tags)
            elif match := _RUN.search(self._uri.path + "/"):
                for key, value in tags.items():
                    client.set_tag(match.group("id"), key, value)
        except Exception as exc:  # never fail an upload that already committed
            _log.warning("lockgate: could not record commit %s for %s: %s", commit_id, self.artifact_uri, exc)

    # -- ArtifactRepository ------------------------------------------------------------------

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        dest = self._path(posixpath.join(artifact_path or "", Path(local_file).name))
        self._commit([(dest, Path(local_file))], f"log {dest}")

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        dest = self._path(artifact_path)
        files = collect_files(Path(local_dir), dest)
        if files:
            self._commit(files, f"log {len(files)} files under {dest or '/'}")

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        store = self._store()
        try:
            commit = self._commit_for_reads(store)
            base = self._path(path)
            entries = store.list_dir(commit, base)
        except StoreError as exc:
            if isinstance(exc, PathNotFoundError):
                return []
            raise MlflowException(f"cannot list {self.artifact_uri}/{path or ''}: {exc}") from exc
        root = self._uri.path
        infos = []
        for entry in entries:
            rel = entry.path[len(root) + 1 :] if root else entry.path
            infos.append(FileInfo(rel, entry.is_dir, entry.size))
        return infos

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        store = self._store()
        try:
            store.export_file(self._commit_for_reads(store), self._path(remote_file_path), local_path)
        except StoreError as exc:
            raise MlflowException(f"cannot download {remote_file_path!r} from {self.artifact_uri}: {exc}") from exc

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        store = self._store()
        base = self._path(artifact_path)
        try:
            doomed = list(store.list_files(store.resolve(self._uri.repo, self._uri.ref.name), base))
            result = store.commit_files(
                self._uri.repo, self._uri.ref.name, [], remove=doomed, message=f"mlflow: delete {base or '/'}"
            )
        except PathNotFoundError:
            return
        except StoreError as exc:
            raise MlflowException(f"cannot delete {artifact_path!r} from {self.artifact_uri}: {exc}") from exc
        self._read_commit = result.commit_id
