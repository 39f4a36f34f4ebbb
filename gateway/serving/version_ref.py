"""``VersionRef``: one served version and its commits, under the reference that named it: what a
deployment says of itself (``Deployment.version_ref``) and what the ledger records of each event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionRef:
    version: str | None
    weights_commit: str | None
    dataset_commit: str | None
    model_uri: str | None = None  # where the weights live (a pinned lockgate:// URI)
    reference: str | None = None  # the registry reference the endpoint follows, e.g. models:/fraud@champion
