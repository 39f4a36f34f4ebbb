"""The one reader of ``lockgate://`` URIs outside the CLI: the MLflow dataset source and the
fsspec filesystem both pin a URI to a commit here and read verified bytes through it.

Pinning turns any ref (branch, tag, commit, unique prefix, ``~N``, ``@{TIME}``) into one commit
id, once; everything read afterwards comes from that commit, so a push that lands mid-read
never mixes two versions of a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lockgate.store import CheckoutReport, Store, StoreURI, parse_uri
from lockgate.store.errors import PathNotFoundError
from lockgate.store.objects import TreeEntry
from lockgate.store.repository import DirEntry


@dataclass(frozen=True)
class Pinned:
    """A URI resolved to one commit."""

    uri: StoreURI
    commit: str

    @property
    def pinned_uri(self) -> str:
        """The immutable form, ``lockgate://REPO@COMMIT/PATH``: what lineage records."""
        return f"lockgate://{self.uri.repo}@{self.commit}" + (f"/{self.uri.path}" if self.uri.path else "")


class StoreReader:
    def __init__(self, store: Store) -> None:
        self.store = store

    def pin(self, uri: str | StoreURI) -> Pinned:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
        return Pinned(parsed, self.store.resolve_uri(parsed))

    def entry(self, pinned: Pinned) -> TreeEntry | None:
        """The file at the pinned path, or None when the path is a directory (or the root)."""
        if not pinned.uri.path:
            return None
        try:
            return self.store.stat(pinned.commit, pinned.uri.path)
        except PathNotFoundError:
            if not self.store.list_dir(pinned.commit, pinned.uri.path):
                raise
            return None

    def list_dir(self, pinned: Pinned) -> list[DirEntry]:
        return self.store.list_dir(pinned.commit, pinned.uri.path)

    def read(self, pinned: Pinned, start: int = 0, length: int | None = None) -> bytes:
        """Bytes of the pinned file; every chunk verified before any of its bytes are returned."""
        return self.store.read_file(pinned.commit, pinned.uri.path, start, length)

    def checkout(self, pinned: Pinned, dest: Path) -> CheckoutReport:
        return self.store.checkout(pinned.commit, pinned.uri.path, dest)
