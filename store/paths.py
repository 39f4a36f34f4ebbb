"""The one rule for file paths inside the store, and safe joins onto local directories.

Store contents are untrusted input: anyone who can write to the bucket can write a tree. A
tree path is therefore checked where a tree is written (so the store never commits a path it
could not check out) and where it is decoded (so a crafted tree is damage, not a file
written outside the cache). Every place that materializes files also joins through
``contained``, which refuses a target outside its directory even if a path slipped past.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from lockgate.store.errors import InvalidPathError

MAX_SEGMENT_BYTES = 255  # NAME_MAX on Linux, macOS and Windows
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
# C0 controls, DEL and the C1 controls; NUL is among them. Backslash is a separator on Windows
# and lockgate's own writer turns it into '/', so a tree that holds one was not written by it.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def check_path(path: str) -> str:
    """Return ``path`` if it is a valid store path; raise ``InvalidPathError`` naming the
    problem otherwise. Valid: relative, '/'-separated, normalized (no '..', '.' or empty
    segment), no control characters or backslash, segments of at most 255 bytes and at most
    4,096 bytes in all."""
    if not path:
        raise InvalidPathError("an empty path")
    bad = _FORBIDDEN.search(path)
    if bad:
        raise InvalidPathError(f"path {path!r} contains the character {bad.group()!r}")
    encoded = path.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path {path[:40]!r}... is {len(encoded):,} bytes; the limit is {MAX_PATH_BYTES:,}")
    if path.startswith("/"):
        raise InvalidPathError(f"path {path!r} is absolute; store paths are relative")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty" if not segment else f"a {segment!r}"
            raise InvalidPathError(f"path {path!r} has {shown} segment; store paths are normalized")
        size = len(segment.encode("utf-8", errors="surrogatepass"))
        if size > MAX_SEGMENT_BYTES:
            raise InvalidPathError(
                f"path {path[:60]!r} has a segment of {size} bytes; the limit is {MAX_SEGMENT_BYTES}"
            )
    return path


def check_tree_paths(paths: Iterable[str]) -> None:
    """Every path valid, and none both a file and a directory (``a`` and ``a/b``): such a
    tree can never be checked out."""
    files: set[str] = set()
    directories: set[str] = set()
    for path in paths:
        check_path(path)
        files.add(path)
        parts = path.split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = files & directories
    if clash:
        raise InvalidPathError(f"path {min(clash)!r} is both a file and a directory")


def contained(base: Path, rel: str) -> Path:
    """``base / rel``, refusing any target that would resolve outside ``base`` (through '..',
    an absolute path or a symlink already in ``base``)."""
    check_path(rel)
    target = base / rel
    root = os.path.realpath(base)
    resolved = os.path.realpath(target)
    if resolved != root and not resolved.startswith(root.rstrip(os.sep) + os.sep):
        raise InvalidPathError(f"path {rel!r} resolves outside {str(base)!r}")
    return target
