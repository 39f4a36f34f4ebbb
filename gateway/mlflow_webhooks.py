"""MLflow registry webhooks, verified: which deliveries lockgate believes, and what they name.

MLflow (3.3 and later, SQL registries, ``mlflow server`` only) signs each delivery:
``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>`` beside
``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds). A delivery is believed only if

1. its signature is the secret's (compared in constant time), checked first, so a forger cannot
   fill the replay memory;
2. its timestamp is within ``max_age`` seconds of this clock (either way): a captured delivery
   cannot be replayed later;
3. its delivery id was not seen within that window: a captured delivery cannot be replayed now.

Delivery is fire-and-forget on MLflow's side (a few retries, nothing stored), and stage
transitions send nothing, so a webhook only makes follow faster; polling stays the source of
truth. A believed delivery names a registered model (``data.name``); the gateway re-resolves the
endpoints whose references name it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

SIGNATURE_VERSION = "v1"
DEFAULT_MAX_AGE_SECONDS = 300.0
_MAX_REMEMBERED = 100_000  # delivery ids held for replay checks; the oldest go first
_MAX_ID_LENGTH = 128


class WebhookRefused(Exception):
    """A delivery lockgate does not believe: answered ``status`` with the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Delivery:
    entity: str
    action: str
    model_name: str | None


class WebhookVerifier:
    def __init__(self, secret: str, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> None:
        self._secret = secret.encode()
        self._max_age = max_age_seconds
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(
        self,
        body: bytes,
        delivery_id: str | None,
        timestamp: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> Delivery:
        """The delivery, if it is believed; else ``WebhookRefused`` naming why."""
        now = time.time() if now is None else now
        if not delivery_id or not timestamp or not signature:
            raise WebhookRefused(401, "a webhook needs X-MLflow-Delivery-Id, X-MLflow-Timestamp and X-MLflow-Signature")
        if len(delivery_id) > _MAX_ID_LENGTH or not timestamp.isascii() or not timestamp.isdigit():
            raise WebhookRefused(400, "X-MLflow-Delivery-Id or X-MLflow-Timestamp is malformed")
        try:
            signed = f"{delivery_id}.{timestamp}.".encode() + body
        except UnicodeEncodeError as exc:
            raise WebhookRefused(400, "X-MLflow-Delivery-Id is not text") from exc
        expected = base64.b64encode(hmac.new(self._secret, signed, hashlib.sha256).digest()).decode()
        version, _, given = signature.partition(",")
        if version != SIGNATURE_VERSION or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRefused(401, "the webhook's signature does not match LOCKGATE_MLFLOW_WEBHOOK_SECRET")
        age = now - int(timestamp)
        if abs(age) > self._max_age:
            raise WebhookRefused(
                400, f"the webhook is stale: sent {age:.0f} s from now, over {self._max_age:g} s (a replay?)"
            )
        self._forget_before(now - self._max_age)
        if delivery_id in self._seen:
            raise WebhookRefused(409, f"delivery {delivery_id!r} was received already (a replay)")
        self._seen[delivery_id] = now
        if len(self._seen) > _MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return _delivery(body)

    def _forget_before(self, cutoff: float) -> None:
        seen = self._seen
        while seen and next(iter(seen.values())) < cutoff:
            seen.popitem(last=False)


def _delivery(body: bytes) -> Delivery:
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookRefused(400, f"the webhook's body is not JSON: {exc}") from exc
    if type(document) is not dict:
        raise WebhookRefused(400, "the webhook's body is not a JSON object")
    data = document.get("data")
    name = data.get("name") if type(data) is dict else None
    return Delivery(
        str(document.get("entity", "")), str(document.get("action", "")), name if type(name) is str else None
    )
