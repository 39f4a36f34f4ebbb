"""Traffic policies as asked for: the canary and shadow specs a deploy, the config file or the
admin API gives, checked, and ``KEEP`` for a field not given.

An endpoint has a primary and, optionally, a *canary* (a reference plus a percentage of the
traffic) and a *shadow* (a reference that gets a copy of the primary's requests, off the
request path; see ``gateway.serving.shadow``). Each role is its own slot (``endpoints.Slot``,
the type the primary is too): its own reference, follow mode and loaded deployment, so moving
``@challenger`` swaps the canary exactly as moving ``@champion`` swaps the primary. Which role answers a request is
``gateway.serving.routing``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from lockgate.gateway.errors import InvalidPolicyError


class Keep:
    """The policy field was not given: keep what the endpoint has."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()


@dataclass(frozen=True)
class CanarySpec:
    model_uri: str
    percent: float

    def __post_init__(self) -> None:
        if not self.model_uri:
            raise InvalidPolicyError("a canary needs a model_uri")
        if not (isinstance(self.percent, int | float) and math.isfinite(self.percent) and 0 <= self.percent <= 100):
            raise InvalidPolicyError(f"canary percent must be a number from 0 to 100, not {self.percent!r}")


@dataclass(frozen=True)
class ShadowSpec:
    model_uri: str

    def __post_init__(self) -> None:
        if not self.model_uri:
            raise InvalidPolicyError("a shadow needs a model_uri")
