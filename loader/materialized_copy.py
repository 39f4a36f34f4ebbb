"""A version's files copied out of the cache into a directory of their own, with their lineage:
what ``lockgate materialize`` writes as KServe's storage initializer, and what ``lockgate serve
DIRECTORY`` serves without reaching the registry or the store.

    DIRECTORY/...files of the version...
    DIRECTORY/lockgate-lineage.json   the resolution (version, weights and dataset commits) and
                                      every file's size and BLAKE3, as the cache verified them

Serving a copy trusts nothing in the directory but the lineage file: every file is checked
against its BLAKE3 while it is adopted into the gateway's cache, so a file changed on the volume
after the initializer ran fails the deploy, and the version is served under the commits that
the lineage file names (the same headers, ledger entries and metrics as a store deploy).
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lockgate.loader.errors import ModelLoadError
from lockgate.loader.resolved import ResolvedModel
from lockgate.store.ids import is_full_id
from lockgate.store.paths import contained

LINEAGE_FILE = "lockgate-lineage.json"
COPY_NOTE = "served from a materialized copy (lockgate materialize): fixed to the version it holds"


def is_materialized_copy(uri: str) -> bool:
    local = uri.removeprefix("file://")
    if "://" in local:
        return False
    try:
        return (Path(local) / LINEAGE_FILE).is_file()
    except OSError:  # a name too long to look up, say: not a copy (the URI parser names why)
        return False


def write_copy(source: Path, files: dict[str, dict[str, Any]], resolved: ResolvedModel, destination: Path) -> int:
    """Copy the cache's verified ``files`` of ``source`` into ``destination``, then the lineage
    file last: a directory without it is not a copy. Real copies, never hard links: a link would
    let an edit of the copy change the cache's verified file too. Returns the bytes written."""
    lineage_file = destination / LINEAGE_FILE
    if destination.is_dir() and any(destination.iterdir()):
        if not lineage_file.is_file():
            raise ModelLoadError(
                f"{destination} is not empty and is not a copy `lockgate materialize` wrote: "
                "choose an empty or new directory"
            )
        # Replacing an earlier copy: it stops being one first, so no crash leaves a lineage
        # file that names files this run has half replaced; its files not in the new one go.
        _, previous = read_copy(str(destination))
        lineage_file.unlink()
        for rel in set(previous) - set(files):
            contained(destination, rel).unlink(missing_ok=True)
    destination.mkdir(parents=True, exist_ok=True)
    total = 0
    for rel, meta in files.items():
        target = contained(destination, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        total += int(meta["size"])
    lineage = {
        "resolved": resolved.to_json(),
        "files": files,
        "materialized_at": datetime.now(UTC).isoformat(),
    }
    tmp = destination / f".{LINEAGE_FILE}.tmp"
    tmp.write_bytes(orjson.dumps(lineage, option=orjson.OPT_INDENT_2))
    tmp.replace(destination / LINEAGE_FILE)
    return total


def read_copy(directory: str) -> tuple[ResolvedModel, dict[str, dict[str, Any]]]:
    """The resolution a copy holds (fixed: a copy never moves) and its files' expected hashes."""
    path = Path(directory.removeprefix("file://"))
    try:
        lineage = orjson.loads((path / LINEAGE_FILE).read_bytes())
        resolved = ResolvedModel.from_json(lineage["resolved"])
        files = {str(rel): dict(meta) for rel, meta in lineage["files"].items()}
        for rel, meta in files.items():
            if type(meta.get("size")) is not int or meta["size"] < 0 or not is_full_id(str(meta.get("blake3"))):
                raise ValueError(f"file {rel!r} needs a size and a BLAKE3, not {meta!r}")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{path / LINEAGE_FILE} is not a lineage file lockgate materialize wrote: {exc}") from exc
    resolved = dataclasses.replace(
        resolved, uri=directory, moves=False, local_copy=str(path), notes=(*resolved.notes, COPY_NOTE)
    )
    return resolved, files
