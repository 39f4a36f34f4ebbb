"""``lockgate://REPO@REF/PATH`` URIs and the names inside them.

REF is a branch, a tag, a commit id or a unique prefix of one (8+ hex characters), optionally
followed by ``~N`` (N commits back along first parents, as in git) and by ``@{TIME}``: the ref as
it was at TIME (ISO 8601, unix seconds, '15m ago' or 'now'; in the spirit of git's and XetHub's
``main@{2023-07-04 12:00}``). Omitting ``@REF`` means branch ``main``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from lockgate.store.errors import InvalidURIError
from lockgate.store.paths import check_path
from lockgate.store.timespec import parse_time

SCHEME = "lockgate://"
DEFAULT_BRANCH = "main"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_RE = re.compile(_NAME)
_REF_RE = re.compile(rf"(?P<name>{_NAME})(?:~(?P<back>\d+))?")


def check_name(kind: str, name: str) -> str:
    """Repository, branch and tag names: letters, digits, '.', '_', '-'; no leading punctuation."""
    if not _NAME_RE.fullmatch(name) or name.endswith(".lock") or ".." in name:
        raise InvalidURIError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def normalize_path(path: str) -> str:
    """A path given by a user, made a store path: '/'-separated, relative, no empty segment.
    '.' and '..' are refused, not resolved, and the result must pass the store's path rule
    (``store.paths.check_path``). '' is the root."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise InvalidURIError(f"invalid path {path!r}: '.' and '..' segments are not allowed")
    normalized = "/".join(parts)
    return check_path(normalized) if normalized else normalized


@dataclass(frozen=True)
class RefSpec:
    name: str
    back: int = 0

    def __str__(self) -> str:
        return f"{self.name}~{self.back}" if self.back else self.name


def parse_ref(text: str) -> RefSpec:
    match = _REF_RE.fullmatch(text)
    if not match or match.group("name").endswith(".lock"):
        raise InvalidURIError(
            f"invalid ref {text!r}: expected a branch, tag or commit id, optionally with ~N (e.g. main~2)"
        )
    return RefSpec(match.group("name"), int(match.group("back") or 0))


@dataclass(frozen=True)
class StoreURI:
    repo: str
    ref: RefSpec
    path: str
    at: datetime | None = None  # @{TIME}: the ref as it was then
    at_text: str | None = None  # TIME as written, so the URI prints back as given

    def __str__(self) -> str:
        when = f"@{{{self.at_text}}}" if self.at_text is not None else ""
        return f"{SCHEME}{self.repo}@{self.ref}{when}" + (f"/{self.path}" if self.path else "")

    @property
    def pinned(self) -> StoreURI:
        """The same place without time travel (to rebuild with a commit id as REF)."""
        return StoreURI(self.repo, self.ref, self.path)


def is_store_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_uri(text: str) -> StoreURI:
    if not is_store_uri(text):
        raise InvalidURIError(f"not a lockgate URI: {text!r} (expected lockgate://REPO@REF/PATH)")
    rest = text[len(SCHEME) :]
    moment, at_text = None, None
    start = rest.find("@{")
    if start != -1:
        end = rest.find("}", start)
        if end == -1:
            raise InvalidURIError(
                f"malformed URI {text!r}: '@{{' without a closing '}}' (lockgate://REPO@REF@{{TIME}}/PATH)"
            )
        at_text = rest[start + 2 : end]
        moment = _moment(text, at_text)
        rest = rest[:start] + rest[end + 1 :]
    head, _, path = rest.partition("/")
    repo, at, ref = head.partition("@")
    if not repo:
        raise InvalidURIError(f"malformed URI {text!r}: the repository name is missing (lockgate://REPO@REF/PATH)")
    if at and not ref:
        raise InvalidURIError(f"malformed URI {text!r}: nothing after '@' (expected a branch, tag or commit)")
    try:
        check_name("repository", repo)
        spec = parse_ref(ref) if at else RefSpec(DEFAULT_BRANCH)
        return StoreURI(repo, spec, normalize_path(path), moment, at_text)
    except InvalidURIError as exc:
        raise InvalidURIError(f"malformed URI {text!r}: {exc}") from exc


def _moment(uri: str, text: str) -> datetime:
    try:
        moment = parse_time(text)
    except ValueError as exc:
        raise InvalidURIError(f"malformed URI {uri!r}: {exc}") from exc
    if moment > datetime.now(UTC):
        raise InvalidURIError(f"time travel to {text!r} in {uri!r} is in the future ({moment.isoformat()})")
    return moment
