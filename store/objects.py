"""The store's immutable objects: file manifests, trees and commits.

Each object is canonical JSON (sorted keys, no spaces). Its id is the BLAKE3 of the
type-prefixed payload (see ``ids.object_id``). On the backend an object is stored as
``KIND\\n`` followed by the zstd-compressed payload, so that a reader can tell what a key
holds and name the right thing when it does not verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import zstandard

from lockgate.store.errors import CorruptObjectError, InvalidPathError
from lockgate.store.ids import object_id
from lockgate.store.paths import check_tree_paths

MANIFEST = "manifest"
TREE = "tree"
COMMIT = "commit"
KINDS = (MANIFEST, TREE, COMMIT)


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a file, and where its bytes live.

    The location (pack, offset, stored length, codec) is part of the manifest, as in Xet's
    file reconstruction terms: a reader needs the manifest and then only ranged pack reads,
    never a global index lookup.
    """

    chunk_id: str
    length: int
    pack_id: str
    offset: int
    stored_length: int
    codec: int

    def encode(self) -> list[Any]:
        return [self.chunk_id, self.length, self.pack_id, self.offset, self.stored_length, self.codec]

    @classmethod
    def decode(cls, row: list[Any]) -> ChunkRef:
        cid, length, pack_id, offset, stored, codec = row
        return cls(str(cid), int(length), str(pack_id), int(offset), int(stored), int(codec))


@dataclass(frozen=True)
class Manifest:
    size: int
    blake3: str
    sha256: str
    chunker: dict[str, Any]
    chunks: tuple[ChunkRef, ...]

    def payload(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "blake3": self.blake3,
            "sha256": self.sha256,
            "chunker": self.chunker,
            "chunks": [c.encode() for c in self.chunks],
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            size=int(data["size"]),
            blake3=str(data["blake3"]),
            sha256=str(data["sha256"]),
            chunker=dict(data["chunker"]),
            chunks=tuple(ChunkRef.decode(r) for r in data["chunks"]),
        )


@dataclass(frozen=True)
class TreeEntry:
    manifest_id: str
    size: int


@dataclass(frozen=True)
class Tree:
    """A flat, sorted map of full file paths to manifests. Model and dataset trees are
    small, so one object per commit beats git's nested trees on round trips."""

    entries: dict[str, TreeEntry]

    def __post_init__(self) -> None:
        # One check for both directions: a tree being written and a tree being decoded.
        check_tree_paths(self.entries)

    def payload(self) -> dict[str, Any]:
        return {"entries": {p: [e.manifest_id, e.size] for p, e in sorted(self.entries.items())}}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Tree:
        return cls({p: TreeEntry(str(m), int(s)) for p, (m, s) in data["entries"].items()})


@dataclass(frozen=True)
class Commit:
    tree: str
    parents: tuple[str, ...]
    author: str
    message: str
    time: str  # ISO 8601 UTC with microseconds, e.g. 2026-11-24T10:00:00.000001Z
    metadata: dict[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "tree": self.tree,
            "parents": list(self.parents),
            "author": self.author,
            "message": self.message,
            "time": self.time,
            "metadata": dict(sorted(self.metadata.items())),
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Commit:
        return cls(
            tree=str(data["tree"]),
            parents=tuple(str(p) for p in data["parents"]),
            author=str(data["author"]),
            message=str(data["message"]),
            time=str(data["time"]),
            metadata={str(k): str(v) for k, v in data.get("metadata", {}).items()},
        )

    @property
    def datetime(self) -> datetime:
        return parse_time(self.time)


def utc_now_iso() -> str:
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


Object = Manifest | Tree | Commit
_KIND_OF: dict[type, str] = {Manifest: MANIFEST, Tree: TREE, Commit: COMMIT}


def canonical(obj: Object) -> bytes:
    return orjson.dumps(obj.payload(), option=orjson.OPT_SORT_KEYS)


def encode(obj: Object) -> tuple[str, bytes]:
    """Return (object id, stored bytes)."""
    kind = _KIND_OF[type(obj)]
    payload = canonical(obj)
    stored = kind.encode() + b"\n" + zstandard.ZstdCompressor(level=3).compress(payload)
    return object_id(kind, payload), stored


def decode(expected_id: str, stored: bytes, expected_kind: str) -> Object:
    """Parse stored bytes and check them against the id they were fetched by."""
    kind_bytes, sep, body = stored.partition(b"\n")
    if not sep:
        raise CorruptObjectError(expected_id, "no kind header")
    kind = kind_bytes.decode(errors="replace")
    if kind != expected_kind:
        raise CorruptObjectError(expected_id, f"expected a {expected_kind}, found {kind!r}")
    try:
        payload = zstandard.ZstdDecompressor().decompress(body)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(expected_id, f"cannot decompress: {exc}") from exc
    if object_id(kind, payload) != expected_id:
        raise CorruptObjectError(expected_id, "content does not hash to its id")
    try:
        data = orjson.loads(payload)
        if kind == MANIFEST:
            return Manifest.from_payload(data)
        if kind == TREE:
            return Tree.from_payload(data)
        return Commit.from_payload(data)
    except InvalidPathError as exc:
        # The bytes hash right, so whoever wrote them meant them: a crafted tree is damage.
        raise CorruptObjectError(expected_id, f"unsafe path: {exc}") from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptObjectError(expected_id, f"malformed {kind}: {exc!r}") from exc
