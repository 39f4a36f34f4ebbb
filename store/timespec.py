"""Reading a moment in time: ISO 8601, a unix timestamp, a relative "15m ago" / "2h" / "3d", or "now".

Used by `--at`, by `@{TIME}` in lockgate:// URIs and by the lineage route."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks)(?:\s+ago)?")
_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """The moment ``text`` names. Raises ``ValueError`` (never anything else) for a time that
    cannot be read or is out of range."""
    text = text.strip()
    now = now or datetime.now(UTC)
    try:
        return _parse(text, now)
    except (OverflowError, OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("cannot read time"):
            raise
        raise ValueError(f"time {text[:40]!r} is out of range: {exc}") from None


def _parse(text: str, now: datetime) -> datetime:
    if text.lower() == "now":
        return now
    match = _RELATIVE.fullmatch(text)
    if match:
        return now - timedelta(seconds=float(match.group("n")) * _SECONDS[match.group("unit")])
    if re.fullmatch(r"@?\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text.lstrip("@")), UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use ISO 8601 (2026-11-24T10:00:00Z), a unix timestamp, '15m ago' or 'now'"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``. Raises ``ValueError``."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = _RELATIVE.fullmatch(text)
    if match is None or text.endswith("ago"):
        raise ValueError(f"cannot read duration {text!r}: use seconds (3600) or 30s, 15m, 2h, 7d, 1w")
    return float(match.group("n")) * _SECONDS[match.group("unit")]
