"""A file in a version's derived directory written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all. Only its own folder is created, never its parents:
    the parent is a version's derived directory, and a version evicted meanwhile must stay gone
    (recreating ``versions/<key>/`` without its files would block that version's next fetch)."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
