"""The canary and shadow roles of an endpoint: set, re-point and drop them.

The deployer owns this (``Deployer.roles``) and calls it under the endpoint's lock. A role is a
slot like the primary (``gateway.serving.endpoints.Slot``) and changes through the same code
(``gateway.control.slot_control``): the new version loads and warms up in a worker thread, the
switch is one assignment on the event loop, the old version drains before it is closed, and
every change is a ledger event with its role (and, for a canary, its share). This module knows
only what a spec asks for; following a moved reference is the slot control's, as for the primary.
"""

from __future__ import annotations

from lockgate.gateway import tracing
from lockgate.gateway.control.slot_control import SlotControl, action_name
from lockgate.gateway.control.traffic_policy import KEEP, CanarySpec, Keep, ShadowSpec
from lockgate.gateway.serving.endpoints import Endpoint, Slot
from lockgate.gateway.serving.roles import CANARY, SHADOW, Role


class RoleControl:
    def __init__(self, slots: SlotControl) -> None:
        self._slots = slots

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
        slots = self._slots
        had_slot = endpoint.slot(role) is not None
        percent = spec.percent if isinstance(spec, CanarySpec) else 0.0
        resolved = None
        try:
            with tracing.deploy_span(endpoint.name, str(role), spec.model_uri, actor):
                resolved = await slots.resolve(spec.model_uri, allow_pin=True)
                await slots.switch(endpoint, Slot(role, spec.model_uri, resolved.moves, percent), resolved, actor)
        except Exception as exc:
            await slots.fail(endpoint, role, exc, actor, resolved)
            if keep_on_failure and not had_slot:
                # A configured role that cannot load yet: shown as failed, retried by follow.
                failed = Slot(role, spec.model_uri, percent=percent, status="failed",
                              last_error=f"{type(exc).__name__}: {exc}")  # fmt: skip
                endpoint.install(failed, role)
                return
            raise

    async def drop(self, endpoint: Endpoint, role: Role, actor: str, *, record: bool = True) -> None:
        slot = endpoint.slot(role)
        if slot is None:
            return
        endpoint.install(None, role)  # no new request reaches it from here on
        live = slot.current
        if record:
            await self._slots.record(endpoint.name, "abort", actor, None, live.version_ref if live else None,
                                     role=role)  # fmt: skip
            self._slots.events.deployed(endpoint.name, action_name(role, "abort"), None)
            endpoint.note(action_name(role, "abort", " "), version=live.version_label if live else None)
        if live is not None:
            await self._slots.retire(endpoint, role, live)


__all__ = ["KEEP", "RoleControl"]
