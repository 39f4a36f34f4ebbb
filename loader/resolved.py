"""What a model URI resolves to: one immutable version, with its lineage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import blake3

from lockgate.store.ids import is_full_id


@dataclass(frozen=True)
class WeightsLocation:
    """Where a version's files live. In the store: a commit and a path, immutable. Otherwise
    an MLflow artifact URI (MLflow never rewrites a registered version's artifacts)."""

    commit: str | None
    path: str
    repo: str | None = None
    artifact_uri: str | None = None

    @property
    def in_store(self) -> bool:
        return self.commit is not None

    @property
    def cache_key(self) -> str:
        """Names the version in the local cache; the same for every URI of one version."""
        if self.commit is not None:
            return f"{self.commit}-{blake3.blake3(self.path.encode()).hexdigest()[:12]}"
        return f"mlflow-{blake3.blake3((self.artifact_uri or '').encode()).hexdigest()[:40]}"

    @property
    def uri(self) -> str:
        if self.commit is not None:
            return f"lockgate://{self.repo}@{self.commit}/{self.path}"
        return self.artifact_uri or ""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # what was asked for
    reference: str  # stage | alias | latest | version | logged | run | store
    moves: bool  # whether re-resolving may change the answer (follow mode)
    name: str | None
    version: str | None
    run_id: str | None
    weights: WeightsLocation
    dataset_commits: tuple[str, ...] = ()
    dataset_uris: tuple[str, ...] = ()
    code_commit: str | None = None
    flavors: tuple[str, ...] = ()
    signature: dict[str, Any] | None = None
    input_example_file: str | None = None
    logged_model_id: str | None = None
    notes: tuple[str, ...] = field(default=())
    local_copy: str | None = None  # a directory `lockgate materialize` wrote: files come from there
    # The dataset the run logged for evaluation (context evaluation, eval, validation or test),
    # pinned to its commit: the model's baseline score is taken on it.
    evaluation_uri: str | None = None

    @property
    def weights_commit(self) -> str | None:
        return self.weights.commit

    @property
    def dataset_commit(self) -> str | None:
        return self.dataset_commits[0] if self.dataset_commits else None

    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-able; ``from_json`` reads it back (local pins, the head start)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedModel:
        """Raises TypeError, KeyError or ValueError on data that is not a resolution. The data
        comes from files (local pins, a materialized copy's lineage): the weights commit names
        a cache directory, so it must be a full store id, never a path."""
        fields: dict[str, Any] = dict(data)
        weights = WeightsLocation(**fields["weights"])
        if weights.commit is not None and not (isinstance(weights.commit, str) and is_full_id(weights.commit)):
            raise ValueError(f"weights commit {weights.commit!r} is not a store commit id")
        fields["weights"] = weights
        for key in ("dataset_commits", "dataset_uris", "flavors", "notes"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights_commit"] = self.weights_commit
        data["dataset_commit"] = self.dataset_commit
        data["weights_uri"] = self.weights.uri
        return data
