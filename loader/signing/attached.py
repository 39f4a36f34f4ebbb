"""Signatures attached to a weights commit without changing it.

A signature lives in the store's reserved repository ``lockgate-signatures`` at
``<weights commit>/<model path>/model.sig``, the way a git note attaches to a commit and a
container signature to an image digest: the weights commit, its pins, its lineage and its dedup
are untouched, and the signature itself is versioned, content-addressed and protected (its branch
cannot be deleted, its history is kept). Signing a path again replaces its signature in a new
commit of the signatures repository; the old one stays in its history.
"""

from __future__ import annotations

from lockgate.loader.resolved import WeightsLocation
from lockgate.store import Store
from lockgate.store.errors import NotFoundError
from lockgate.store.layout import SIGNATURES_REPO

SIGNATURE_FILE = "model.sig"
BRANCH = "main"


def note_path(weights: WeightsLocation) -> str:
    if not weights.commit:
        raise ValueError("only a version stored in lockgate's store (a weights commit) can carry a signature")
    path = weights.path.strip("/")
    return f"{weights.commit}/{path}/{SIGNATURE_FILE}" if path else f"{weights.commit}/{SIGNATURE_FILE}"


def attach(store: Store, weights: WeightsLocation, bundle: bytes, *, signer: str) -> str:
    """Attach ``bundle`` to ``weights``; returns the signatures repository's new commit."""
    result = store.commit_files(
        SIGNATURES_REPO,
        BRANCH,
        [(note_path(weights), bundle)],
        message=f"sign {weights.repo or 'models'}@{weights.commit}:{weights.path or '/'} ({signer})",
        metadata={"signer": signer, "weights_commit": str(weights.commit), "path": weights.path},
    )
    return result.commit_id


def read(store: Store, weights: WeightsLocation) -> bytes | None:
    """The signature attached to ``weights``, or None when there is none."""
    if not weights.commit:
        return None
    try:
        head = store.resolve(SIGNATURES_REPO, BRANCH)
        return store.read_file(head, note_path(weights))
    except NotFoundError:
        return None
