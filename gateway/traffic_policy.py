"""Traffic policies: which live deployment of an endpoint answers a request.

An endpoint has a primary and, optionally, a *canary* (a reference plus a percentage of the
traffic) and a *shadow* (a reference that gets a copy of the primary's requests, off the
request path; see ``gateway.shadow``). Each role is its own slot: its own reference, follow
mode and loaded deployment, so moving ``@challenger`` swaps the canary exactly as moving
``@champion`` swaps the primary.

The split: a request that carries ``X-Lockgate-Route-Key`` lands on a point in [0, 100) given
by a hash of the endpoint name and the key, and goes to the canary when that point is below the
canary's percentage. So one key always reaches one version while the policy holds, and raising
the percentage only moves keys *to* the canary (a key below 10 is also below 20). Requests with
no key get a random point.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway.errors import InvalidPolicyError

if TYPE_CHECKING:
    from gateway.endpoints import Deployment, Endpoint

ROUTE_KEY_HEADER: Final = "x-lockgate-route-key"
PRIMARY: Final = "primary"
CANARY: Final = "canary"
SHADOW: Final = "shadow"
_POINTS = float(1 << 64)


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


@dataclass
class RoleSlot:
    """One non-primary role of an endpoint: what it follows and what it serves now."""

    role: str  # canary | shadow
    model_uri: str
    percent: float = 0.0  # the canary's share; a shadow mirrors every request
    follow: bool = False
    requested_follow: bool | None = None
    current: Deployment | None = None
    status: str = "loading"
    last_error: str | None = None
    failed_key: str | None = None  # a version that failed; not retried until the reference moves

    def describe(self) -> dict[str, Any]:
        current = self.current
        resolved = current.resolved if current else None
        out: dict[str, Any] = {
            "role": self.role,
            "status": self.status,
            "model_uri": self.model_uri,
            "follow": self.follow,
            "version": resolved.version if resolved else None,
            "weights_commit": resolved.weights_commit if resolved else None,
            "dataset_commit": resolved.dataset_commit if resolved else None,
            "serving_path": current.serving_path if current else None,
            "loaded_at": current.loaded_at if current else None,
            "last_error": self.last_error,
        }
        if self.role == CANARY:
            out["percent"] = self.percent
        return out


def route_point(endpoint: str, route_key: str) -> float:
    """Where a route key lands in [0, 100): stable across processes, replicas and restarts."""
    digest = hashlib.blake2b(route_key.encode("utf-8", "surrogatepass"), digest_size=8, key=endpoint.encode()[:64])
    return int.from_bytes(digest.digest(), "big") / _POINTS * 100.0


def choose(endpoint: Endpoint, route_key: str | None) -> tuple[Deployment | None, str]:
    """(the deployment that answers this request, its role). The primary when there is no live
    canary; the deployment is None only when the primary has not loaded yet."""
    primary = endpoint.current
    canary = endpoint.canary
    if canary is None or primary is None:
        return primary, PRIMARY
    live = canary.current
    if live is None or canary.percent <= 0:
        return primary, PRIMARY
    point = route_point(endpoint.name, route_key) if route_key else random.random() * 100.0
    if point < canary.percent:
        return live, CANARY
    return primary, PRIMARY


def route_key_of(headers: Mapping[str, str]) -> str | None:
    key = headers.get(ROUTE_KEY_HEADER)
    return key or None


def role_headers(deployment: Deployment, role: str) -> dict[str, str]:
    """The lineage headers every answer carries, with the role that answered."""
    headers = deployment.headers()
    headers["X-Lockgate-Role"] = role
    return headers
