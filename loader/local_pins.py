"""What each model URI last resolved to, remembered beside the cache, so that a gateway restarted
while the MLflow registry is down still serves the version it was serving: pinned and verified,
from its own cache.

A pin is written after every successful resolution. It is read when the registry is
unreachable, and at a gateway's start (``lockgate serve``: a warm restart serves the pin at
once, then asks the registry), and only if the pinned version is complete in the cache (so
every byte served was verified when it was materialized). The registry stays the truth:
follow mode re-resolves as usual, and the first answer from the registry replaces the pin.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import blake3
import orjson

from lockgate.loader.resolved import ResolvedModel

PIN_NOTE = "resolved from local pin: the registry is unreachable, so this is the version last resolved for the URI"
# A warm restart: served from the pin at once, before the registry was asked (it is, in the background).
PIN_FIRST_NOTE = "resolved from local pin: served at start before the registry answered; reconciling in the background"
PIN_NOTES = (PIN_NOTE, PIN_FIRST_NOTE)


def from_pin(notes: tuple[str, ...] | list[str]) -> bool:
    """Whether a resolution came from a local pin and the registry has not vouched for it yet."""
    return any(note in PIN_NOTES for note in notes)


class LocalPins:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _file(self, uri: str) -> Path:
        return self.directory / f"{blake3.blake3(uri.encode()).hexdigest()[:32]}.json"

    def remember(self, resolved: ResolvedModel) -> None:
        data = resolved.to_json()
        data["notes"] = [n for n in resolved.notes if n not in PIN_NOTES]
        path = self._file(resolved.uri)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(orjson.dumps(data))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a pin is a convenience: never fail a resolution for it

    def recall(self, uri: str, note: str = PIN_NOTE) -> ResolvedModel | None:
        try:
            resolved = ResolvedModel.from_json(orjson.loads(self._file(uri).read_bytes()))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # no pin, or one this version cannot read: behave as if none
        if resolved.uri != uri:
            return None
        return dataclasses.replace(resolved, notes=(*resolved.notes, note))
