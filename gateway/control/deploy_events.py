"""Control-plane events, published by the deployer to whoever subscribes (metrics today; the
traffic policies and protocols of later work): the deployer knows no subscriber and calls
nothing in the app factory.

- ``deployed(name, action, deployment)``: a deploy, swap, rollback, update or undeploy happened.
  ``deployment`` is the version now serving, or None when no new version was loaded
  (``undeploy``, ``failed``, and ``update``: the same version under a new reference).
- ``retired(name, deployment, role)``: a version stopped serving ``name`` in ``role``
  (``primary``, ``canary``, ``shadow``) and its series of that role may go.
- ``signature_refused(name, role, refusal)``: a version was refused for its signature
  (``unsigned``, ``untrusted`` or ``mismatch``); only subscribers that define it hear it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lockgate.gateway.serving.endpoints import Deployment

_log = logging.getLogger(__name__)


class DeploySubscriber(Protocol):
    def deployed(self, name: str, action: str, deployment: Deployment | None) -> None: ...

    def retired(self, name: str, deployment: Deployment, role: str = "primary") -> None: ...


class DeployEvents:
    def __init__(self) -> None:
        self._subscribers: list[DeploySubscriber] = []

    def subscribe(self, subscriber: DeploySubscriber) -> None:
        self._subscribers.append(subscriber)

    def deployed(self, name: str, action: str, deployment: Deployment | None) -> None:
        for subscriber in self._subscribers:
            # A subscriber's bug must never fail a deploy that has already switched traffic.
            try:
                subscriber.deployed(name, action, deployment)
            except Exception:
                _log.exception("deploy subscriber %r failed on %s of %s", subscriber, action, name)

    def retired(self, name: str, deployment: Deployment, role: str = "primary") -> None:
        for subscriber in self._subscribers:
            try:
                subscriber.retired(name, deployment, role)
            except Exception:
                _log.exception("deploy subscriber %r failed on retiring a version of %s", subscriber, name)

    def signature_refused(self, name: str, role: str, refusal: str) -> None:
        for subscriber in self._subscribers:
            hear = getattr(subscriber, "signature_refused", None)
            if hear is None:
                continue
            try:
                hear(name, role, refusal)
            except Exception:
                _log.exception("deploy subscriber %r failed on a signature refusal of %s", subscriber, name)
