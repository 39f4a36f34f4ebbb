"""Content identities: BLAKE3-256 of chunks, and of type-prefixed canonical objects."""

from __future__ import annotations

import re

import blake3

ID_HEX_LEN = 64
_ID_RE = re.compile(r"[0-9a-f]{64}")


def chunk_id(data: bytes | memoryview) -> str:
    """A chunk is named by the BLAKE3 of its raw (uncompressed) bytes."""
    return blake3.blake3(data).hexdigest()


def object_id(kind: str, payload: bytes) -> str:
    """Objects hash their kind and length with their payload (git-style), so a tree can
    never be mistaken for a commit that happens to share its bytes."""
    header = f"{kind} {len(payload)}\0".encode()
    return blake3.blake3(header + payload).hexdigest()


def is_full_id(text: str) -> bool:
    return bool(_ID_RE.fullmatch(text))
