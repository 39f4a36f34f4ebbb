"""Copying in from MLflow's artifact stores (``lockgate store cp runs:/RUN/PATH ...``, ``models:/``,
``mlflow-artifacts:/``): MLflow's own artifact repositories list and download the files, one at a
time, so a copy needs local disk for one file, not for the whole tree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from lockgate.loader.errors import ArtifactSourceError
from lockgate.store.paths import check_path
from lockgate.store.repository import Stream

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(MLFLOW_SCHEMES)


class _DownloadedFile:
    """A downloaded artifact, open for reading; its temporary directory goes when it closes."""

    def __init__(self, path: Path, directory: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._directory = directory

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def close(self) -> None:
        self._file.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def mlflow_sources(uri: str, dest: str) -> list[tuple[str, Stream]]:
    """(store path under ``dest``, stream) for every file at or under an MLflow artifact URI."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repository = get_artifact_repository(uri)
        files = _walk(repository, "")
        if not files:
            # The URI may name one file: list its parent and pick it.
            raise ArtifactSourceError(f"no artifacts at {uri}")
    except MlflowException as exc:
        raise ArtifactSourceError(f"cannot list {uri} through MLflow: {exc.message}") from exc
    dest = dest.strip("/")
    return [
        (check_path(f"{dest}/{path}" if dest else path), _stream(repository, uri, path, size)) for path, size in files
    ]


def _walk(repository: Any, path: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for info in repository.list_artifacts(path or None):
        if info.is_dir:
            out.extend(_walk(repository, info.path))
        else:
            out.append((info.path, int(info.file_size or 0)))
    return out


def _stream(repository: Any, uri: str, path: str, size: int) -> Stream:
    def open_download() -> _DownloadedFile:
        directory = tempfile.mkdtemp(prefix="lockgate-cp-")
        try:
            local = repository.download_artifacts(path, dst_path=directory)
        except MlflowException as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ArtifactSourceError(f"cannot download {uri}/{path} through MLflow: {exc.message}") from exc
        return _DownloadedFile(Path(local), directory)

    return Stream(open=open_download, size=size, name=f"{uri.rstrip('/')}/{path}")
