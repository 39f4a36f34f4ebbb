"""Routing one request: which live deployment of an endpoint answers it, and with which role.

The split: a request that carries ``X-Lockgate-Route-Key`` lands on a point in [0, 100) given by
a hash of the endpoint name and the key, and goes to the canary when that point is below the
canary's percentage. So one key always reaches one version while the policy holds, and raising
the percentage only moves keys *to* the canary (a key below 10 is also below 20). Requests with
no key get a random point. The data plane (``gateway/serving/data_plane.py``) routes each request once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from lockgate.gateway.serving.roles import CANARY, PRIMARY, Role

if TYPE_CHECKING:
    from lockgate.gateway.serving.endpoints import Deployment, Endpoint

ROUTE_KEY_HEADER: Final = "x-lockgate-route-key"
_POINTS = float(1 << 64)


def route_point(endpoint: str, route_key: str) -> float:
    """Where a route key lands in [0, 100): stable across processes, replicas and restarts."""
    digest = hashlib.blake2b(route_key.encode("utf-8", "surrogatepass"), digest_size=8, key=endpoint.encode()[:64])
    return int.from_bytes(digest.digest(), "big") / _POINTS * 100.0


def choose(endpoint: Endpoint, route_key: str | None) -> tuple[Deployment | None, Role]:
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


def role_headers(deployment: Deployment, role: Role) -> dict[str, str]:
    """The lineage headers every answer carries, with the role that answered."""
    headers = deployment.headers()
    headers["X-Lockgate-Role"] = role
    return headers
