"""The registry facts a resolve needs, whoever read them.

Two readers produce these: MLflow's own client (any registry MLflow speaks to) and the direct
read of a local sqlite registry (``loader/sqlite_registry.py``). The resolver works on these
plain records, so both readers answer through one resolve and are held equal by one test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VersionFacts:
    """One registered model version."""

    name: str
    version: str
    source: str
    run_id: str | None
    download_uri: str  # MLflow's get_model_version_download_uri: storage location, else source
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedModelFacts:
    """One MLflow 3 LoggedModel (``models:/m-...``)."""

    model_id: str
    name: str
    artifact_location: str
    source_run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFacts:
    """What lineage needs of a run: its tags and the sources of its dataset inputs, in MLflow's order."""

    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    dataset_sources: tuple[str, ...] = ()
    # The inputs logged with an evaluation context (``evaluation``, ``eval``, ``validation``,
    # ``test``): the model's baseline score is taken on the first of them.
    evaluation_sources: tuple[str, ...] = ()


EVALUATION_CONTEXTS = frozenset({"evaluation", "eval", "validation", "test"})
CONTEXT_TAG = "mlflow.data.context"


def version_facts(mv: Any, download_uri: str) -> VersionFacts:
    return VersionFacts(
        name=str(mv.name),
        version=str(mv.version),
        source=str(mv.source or ""),
        run_id=mv.run_id or None,
        download_uri=download_uri,
        tags=dict(mv.tags or {}),
    )


def logged_model_facts(logged: Any) -> LoggedModelFacts:
    return LoggedModelFacts(
        model_id=str(logged.model_id),
        name=str(logged.name),
        artifact_location=str(logged.artifact_location),
        source_run_id=logged.source_run_id or None,
        tags=dict(logged.tags or {}),
    )


def run_facts(run: Any) -> RunFacts:
    inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
    return RunFacts(
        run_id=str(run.info.run_id),
        tags=dict(run.data.tags or {}),
        dataset_sources=tuple(str(i.dataset.source) for i in inputs if getattr(i.dataset, "source", None)),
        evaluation_sources=tuple(
            str(i.dataset.source)
            for i in inputs
            if getattr(i.dataset, "source", None)
            and any(t.key == CONTEXT_TAG and str(t.value).lower() in EVALUATION_CONTEXTS for t in (i.tags or []))
        ),
    )
