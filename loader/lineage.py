"""Lineage from MLflow: the dataset commit(s) and the code commit behind a run.

Dataset commits come from the run's ``mlflow.log_input`` sources of the form
``lockgate://REPO@COMMIT/PATH``, or from a ``lockgate.dataset`` tag on the run or version.
A tag that names a branch is resolved to its commit now, and a note says so: lineage must be
a commit, and the store is the only one who can say which.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from lockgate.store import StoreURI, is_store_uri, parse_uri
from lockgate.store.errors import StoreError
from lockgate.store.ids import is_full_id

DATASET_TAG = "lockgate.dataset"
CODE_COMMIT_TAG = "mlflow.source.git.commit"


def _source_uri(raw: str) -> str | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)
    if isinstance(parsed, dict):
        return parsed.get("uri") or parsed.get("url") or parsed.get("path")
    return str(parsed)


def dataset_uris(dataset_sources: Iterable[str], tag_sets: Iterable[dict[str, str]] = ()) -> list[str]:
    """The store URIs of a run's dataset inputs (their MLflow source JSON), then the lineage tags."""
    uris: list[str] = []
    for source in dataset_sources:
        uri = _source_uri(source)
        if uri and is_store_uri(uri) and uri not in uris:
            uris.append(uri)
    for tag_set in tag_sets:
        uri = tag_set.get(DATASET_TAG)
        if uri and uri not in uris:
            uris.append(uri)
    return uris


def pin_dataset_uris(
    uris: Iterable[str], resolve_uri: Callable[[StoreURI], str]
) -> tuple[list[str], list[str], list[str]]:
    """Return (commits, pinned URIs, notes). ``resolve_uri(uri)`` gives a commit id (time
    travel and short ids included)."""
    commits: list[str] = []
    pinned: list[str] = []
    notes: list[str] = []
    for uri in uris:
        try:
            parsed = parse_uri(uri)
        except StoreError as exc:
            notes.append(f"ignored dataset lineage {uri!r}: {exc}")
            continue
        fixed = is_full_id(parsed.ref.name) and not parsed.ref.back and parsed.at is None
        commit = parsed.ref.name if fixed else None
        if commit is None:
            try:
                commit = resolve_uri(parsed)
            except StoreError as exc:
                notes.append(f"dataset lineage {uri!r} names a ref the store cannot resolve: {exc}")
                continue
            notes.append(f"dataset lineage {uri!r} names a moving ref; pinned to {commit} at resolve time")
        if commit not in commits:
            commits.append(commit)
            pinned.append(f"lockgate://{parsed.repo}@{commit}/{parsed.path}")
    return commits, pinned, notes
