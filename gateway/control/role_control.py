"""The canary and shadow roles of an endpoint: set, re-point, follow and drop them.

The deployer owns this (``Deployer.roles``) and calls it under the endpoint's lock, so a role
changes under the same rules as the primary: the new version loads and warms up in a worker
thread, the switch is one assignment on the event loop, the old version drains before it is
closed, and every change is a ledger event with its role (and, for a canary, its share).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gateway.control.deploy_events import DeployEvents
from gateway.control.traffic_policy import KEEP, CanarySpec, Keep, ShadowSpec
from gateway.serving.endpoints import Deployment, Endpoint, RoleSlot
from gateway.serving.roles import CANARY, SHADOW, Role
from gateway.serving.serving_options import ServingOptions
from gateway.serving.version_ref import VersionRef
from loader.model_loader import ModelLoader
from loader.resolved import ResolvedModel


class SlotHost(Protocol):
    """What the roles use of the deployer that owns them, named here so this module does not
    import the deployer (which imports it). The one-slot-type rework of the data-plane issue
    writes switch, retire, follow and fail once, and removes these calls back."""

    loader: ModelLoader
    events: DeployEvents
    drain_timeout: float

    async def load(self, resolved: ResolvedModel, options: ServingOptions) -> Deployment: ...

    async def record(
        self,
        endpoint: str,
        action: str,
        actor: str,
        to: VersionRef | None,
        from_: VersionRef | None,
        *,
        error: str | None = None,
        role: str = ...,
        percent: float | None = None,
    ) -> None: ...

    async def failed(
        self, endpoint: Endpoint, exc: BaseException, actor: str, resolved: ResolvedModel | None, *, role: str = ...
    ) -> None: ...


_log = logging.getLogger(__name__)


class RoleControl:
    def __init__(self, deployer: SlotHost) -> None:
        self._deployer = deployer

    async def apply(
        self,
        endpoint: Endpoint,
        canary: CanarySpec | Keep | None,
        shadow: ShadowSpec | Keep | None,
        actor: str,
        *,
        keep_on_failure: bool = False,
    ) -> None:
        """Set (a spec), drop (None) or keep (KEEP) each role. The caller holds the lock."""
        roles: tuple[tuple[CanarySpec | ShadowSpec | Keep | None, Role], ...] = ((canary, CANARY), (shadow, SHADOW))
        for spec, role in roles:
            if isinstance(spec, Keep):
                continue
            if spec is None:
                await self.drop(endpoint, role, actor)
            else:
                await self._set(endpoint, role, spec, actor, keep_on_failure)

    async def _set(
        self, endpoint: Endpoint, role: Role, spec: CanarySpec | ShadowSpec, actor: str, keep_on_failure: bool
    ) -> None:
        deployer = self._deployer
        slot = getattr(endpoint, role)
        percent = spec.percent if isinstance(spec, CanarySpec) else 0.0
        resolved = None
        try:
            resolved = await asyncio.to_thread(deployer.loader.resolve, spec.model_uri, allow_pin=True)
            live = slot.current if slot is not None else None
            if live is not None and live.key == resolved.weights.cache_key and live.options == endpoint.options:
                # The version is live already: only the reference or the share changes.
                before = (slot.model_uri, slot.percent)
                slot.model_uri, slot.percent, slot.follow = spec.model_uri, percent, resolved.moves
                slot.status, slot.last_error, slot.failed_key = "ready", None, None
                if before != (spec.model_uri, percent):
                    to, from_ = live.version_ref_for(spec.model_uri), live.version_ref_for(before[0])
                    await deployer.record(endpoint.name, "update", actor, to, from_, role=role,
                                          percent=self._share(slot))  # fmt: skip
                    endpoint.note(f"{role} update", version=live.version_label, percent=percent)
                return
            fresh = RoleSlot(role, spec.model_uri, percent, follow=resolved.moves)
            await self._switch(endpoint, fresh, resolved, actor, old=live)
        except Exception as exc:
            await deployer.failed(endpoint, exc, actor, resolved, role=role)
            if keep_on_failure and slot is None:
                # A configured role that cannot load yet: shown as failed, retried by follow.
                setattr(endpoint, role, RoleSlot(role, spec.model_uri, percent, status="failed",
                                                 last_error=f"{type(exc).__name__}: {exc}"))  # fmt: skip
                return
            raise

    async def _switch(
        self, endpoint: Endpoint, slot: RoleSlot, resolved: ResolvedModel, actor: str, old: Deployment | None
    ) -> None:
        """Load ``resolved`` into ``slot`` and make it the endpoint's role."""
        deployer = self._deployer
        deployment = await deployer.load(resolved, endpoint.options)
        deployer.loader.cache.pin(deployment.key)
        slot.current, slot.status, slot.last_error, slot.failed_key = deployment, "ready", None, None
        setattr(endpoint, slot.role, slot)  # the switch: new requests reach this version now
        kind = "swap" if old is not None else "deploy"
        await deployer.record(endpoint.name, kind, actor, deployment.version_ref_for(slot.model_uri),
                              old.version_ref if old else None, role=slot.role, percent=self._share(slot))  # fmt: skip
        deployer.events.deployed(endpoint.name, f"{slot.role}-{kind}", deployment)
        endpoint.note(f"{slot.role} {kind}", version=resolved.version, weights_commit=resolved.weights_commit,
                      bytes_fetched=deployment.servable.report.fetch.bytes_fetched)  # fmt: skip
        if old is not None:
            await self.retire(endpoint, slot.role, old)

    async def drop(self, endpoint: Endpoint, role: Role, actor: str, *, record: bool = True) -> None:
        slot = getattr(endpoint, role)
        if slot is None:
            return
        setattr(endpoint, role, None)  # no new request reaches it from here on
        live = slot.current
        if record:
            await self._deployer.record(endpoint.name, "abort", actor, None, live.version_ref if live else None,
                                        role=role)  # fmt: skip
            self._deployer.events.deployed(endpoint.name, f"{role}-abort", None)
            endpoint.note(f"{role} abort", version=live.version_label if live else None)
        if live is not None:
            await self.retire(endpoint, role, live)

    async def retire(self, endpoint: Endpoint, role: str, old: Deployment) -> None:
        deployer = self._deployer
        if not await old.drained(deployer.drain_timeout):
            _log.warning("endpoint %s: %s version %s still busy after %ss", endpoint.name, role, old.version_label,
                         deployer.drain_timeout)  # fmt: skip
        old.close()
        deployer.loader.cache.unpin(old.key)
        deployer.events.retired(endpoint.name, old, role=role)

    async def follow(self, endpoint: Endpoint) -> None:
        """Re-resolve each role that follows its reference (or never loaded); swap on a move.
        The caller holds the endpoint's lock."""
        for slot in endpoint.roles():
            if not (slot.follow or slot.current is None):
                continue
            resolved = None
            try:
                resolved = await asyncio.to_thread(
                    self._deployer.loader.resolve, slot.model_uri, allow_pin=slot.current is None
                )
                key = resolved.weights.cache_key
                if slot.current is not None and key == slot.current.key:
                    slot.last_error, slot.failed_key = None, None
                    continue
                if slot.failed_key == key:
                    continue  # this exact version already failed; wait for the reference to move
                if slot.current is None:
                    slot.follow = resolved.moves
                await self._switch(endpoint, slot, resolved, "follow", old=slot.current)
            except Exception as exc:
                slot.last_error = f"{type(exc).__name__}: {exc}"
                await self._deployer.failed(endpoint, exc, "follow", resolved, role=slot.role)
                if resolved is not None:
                    slot.failed_key = resolved.weights.cache_key

    @staticmethod
    def _share(slot: RoleSlot) -> float | None:
        return slot.percent if slot.role == CANARY else None


__all__ = ["KEEP", "RoleControl"]
