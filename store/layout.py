"""Where each thing lives under a store root. The one place that spells out keys."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT_KEY = "lockgate-store.json"
FORMAT_VERSION = 1


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}.pack"


INDEX_PREFIX = "index/"
# Index objects under time-ordered keys (``store.chunk_index``): a writer lists only what is new.
TIMED_INDEX_PREFIX = "index/t/"
# Changed by every garbage collection that deleted something: dedup tables built before are stale.
GC_GENERATION_KEY = "gc-generation.json"
# The parents a garbage collection with a history-retention policy dropped (store.history_retention).
HISTORY_CUTS_KEY = "history-cuts.json"


def index_key(pack_id: str, moment: datetime | None = None) -> str:
    stamp = (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{TIMED_INDEX_PREFIX}{stamp}-{pack_id}.idx"


def pack_id_of_index_key(key: str) -> str:
    """The pack an index key describes: ``index/t/<time>-<pack>.idx`` or ``index/<pack>.idx``."""
    return key.rsplit("/", 1)[-1].removesuffix(".idx").rsplit("-", 1)[-1]


def object_key(object_id: str) -> str:
    return f"objects/{object_id[:2]}/{object_id}"


REPOS_PREFIX = "repos/"
# The repository the gateway keeps its deployment ledger in: reserved, its history protected.
LEDGER_REPO = "lockgate-ledger"
# Where model signatures attach to weights commits without changing them (as git notes attach to
# a commit): one file per signed model path, keyed by the commit it signs. Reserved, protected.
SIGNATURES_REPO = "lockgate-signatures"


def repo_key(repo: str) -> str:
    return f"{REPOS_PREFIX}{repo}/repo.json"


def branch_prefix(repo: str) -> str:
    return f"{REPOS_PREFIX}{repo}/refs/heads/"


def tag_prefix(repo: str) -> str:
    return f"{REPOS_PREFIX}{repo}/refs/tags/"


def branch_key(repo: str, branch: str) -> str:
    return branch_prefix(repo) + branch


def tag_key(repo: str, tag: str) -> str:
    return tag_prefix(repo) + tag
