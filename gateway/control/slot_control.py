"""Putting a version into one of an endpoint's slots, and taking it out: written once for the
primary, the canary and the shadow.

Every load runs in a worker thread (never on the event loop) and is made whole by the preparer
before the switch, which is one assignment on the event loop. The version it replaces drains its
in-flight requests before it is closed. Every change is a ledger event with its role (and, for a
canary, its share), and a deploy event for the metrics. Failures leave the slot serving what it
served, and show on it.

The deployer and the role control call down into this module; it calls nothing above it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from lockgate.gateway import tracing
from lockgate.gateway.control.deploy_events import DeployEvents
from lockgate.gateway.control.ledger import Ledger
from lockgate.gateway.serving.endpoints import Deployment, Endpoint, Slot
from lockgate.gateway.serving.roles import PRIMARY, Role
from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.gateway.serving.version_ref import VersionRef
from lockgate.loader.local_pins import from_pin
from lockgate.loader.model_loader import ModelLoader, ServableModel
from lockgate.loader.resolved import ResolvedModel

_log = logging.getLogger(__name__)
# Makes a loaded model a complete deployment: gateway.control.preparer.Preparer, or anything alike.
Preparer = Callable[[ServableModel, ServingOptions], Deployment]


def action_name(role: Role, action: str, separator: str = "-") -> str:
    """How an action is named for a role: ``swap`` for the primary, ``canary-swap`` (deploy
    events) or ``canary swap`` (the endpoint's history) for the others, as they always were."""
    return action if role == PRIMARY else f"{role}{separator}{action}"


def target_ref(resolved: ResolvedModel) -> VersionRef:
    return VersionRef(
        resolved.version, resolved.weights_commit, resolved.dataset_commit, resolved.weights.uri, resolved.uri
    )


class SlotControl:
    def __init__(
        self,
        loader: ModelLoader,
        ledger: Ledger,
        events: DeployEvents,
        prepare: Preparer,
        *,
        drain_timeout: float = 30.0,
    ) -> None:
        self.loader = loader
        self.ledger = ledger
        self.events = events
        self.drain_timeout = drain_timeout
        self._prepare = prepare

    async def resolve(self, model_uri: str, **options: bool) -> ResolvedModel:
        """What ``model_uri`` names now (``ModelLoader.resolve``), off the event loop; a deploy's
        ``resolve`` phase when traced."""
        with tracing.child("resolve"):
            resolved = await asyncio.to_thread(self.loader.resolve, model_uri, **options)
        # On the deploy's own span (current again, now ``resolve`` has ended).
        tracing.annotate(model_version=resolved.version, weights_commit=resolved.weights_commit,
                         dataset_commit=resolved.dataset_commit)  # fmt: skip
        return resolved

    async def load(self, resolved: ResolvedModel, options: ServingOptions) -> Deployment:
        def load() -> Deployment:
            # The preparer loads the native model, unless a checked graph can serve before it does.
            servable = self.loader.load(resolved, prefer_pyfunc=True, defer_native=True, phase=tracing.child)
            with tracing.child("prepare"):
                return self._prepare(servable, options)

        # to_thread carries the context along: the phases are children of the deploy's span.
        return await asyncio.to_thread(load)

    async def record(
        self,
        endpoint: str,
        action: str,
        actor: str,
        to: VersionRef | None,
        from_: VersionRef | None,
        *,
        error: str | None = None,
        role: Role = PRIMARY,
        percent: float | None = None,
    ) -> None:
        # A ledger append is a store commit: off the event loop, so predictions keep flowing.
        await asyncio.to_thread(
            self.ledger.record, endpoint, action, actor, to, from_, error=error, role=role, percent=percent
        )

    async def switch(self, endpoint: Endpoint, fresh: Slot, resolved: ResolvedModel, actor: str) -> None:
        """Serve ``resolved`` in ``fresh`` and make it the endpoint's slot for ``fresh.role``.

        If the role already serves this version with the endpoint's options, nothing loads: a
        changed reference, follow mode or share is recorded as an ``update``, so the ledger never
        misses a change. ``fresh`` is installed only once its version is live."""
        role = fresh.role
        old = endpoint.slot(role)
        live = old.current if old is not None else None
        fresh.status, fresh.last_error, fresh.failed_key = "ready", None, None
        if live is not None and live.key == resolved.weights.cache_key and live.options == endpoint.options:
            fresh.current = live
            endpoint.install(fresh, role)
            assert old is not None  # it serves ``live``
            if (old.model_uri, old.follow, old.percent) == (fresh.model_uri, fresh.follow, fresh.percent):
                endpoint.note(action_name(role, "unchanged", " "), version=resolved.version)
                return
            to, from_ = live.version_ref_for(fresh.model_uri), live.version_ref_for(old.model_uri)
            await self.record(endpoint.name, "update", actor, to, from_, role=role, percent=fresh.share)
            self.events.deployed(endpoint.name, action_name(role, "update"), None)
            endpoint.note(action_name(role, "update", " "), version=resolved.version, model_uri=fresh.model_uri,
                          follow=fresh.follow, **({} if fresh.share is None else {"percent": fresh.share}))  # fmt: skip
            return
        deployment = await self.load(resolved, endpoint.options)
        self.loader.cache.pin(deployment.key)
        fresh.current = deployment
        endpoint.install(fresh, role)  # the switch: new requests reach this version now
        kind = "swap" if live is not None else "deploy"
        await self.record(endpoint.name, kind, actor, deployment.version_ref_for(fresh.model_uri),
                          live.version_ref if live else None, role=role, percent=fresh.share)  # fmt: skip
        self.events.deployed(endpoint.name, action_name(role, kind), deployment)
        endpoint.note(action_name(role, kind, " "), version=resolved.version, weights_commit=resolved.weights_commit,
                      bytes_fetched=deployment.servable.report.fetch.bytes_fetched)  # fmt: skip
        if live is not None:
            await self.retire(endpoint, role, live)

    async def retire(self, endpoint: Endpoint, role: Role, old: Deployment) -> None:
        """Close ``old`` once it has drained. The primary keeps it as the rollback target (and
        unpins the one before it); the other roles unpin it."""
        if not await old.drained(self.drain_timeout):
            _log.warning("endpoint %s: %s version %s still busy after %ss", endpoint.name, role, old.version_label,
                         self.drain_timeout)  # fmt: skip
        old.close()
        if role != PRIMARY:
            self.loader.cache.unpin(old.key)
            self.events.retired(endpoint.name, old, role=role)
            return
        before, current = endpoint.previous, endpoint.current
        endpoint.previous = old
        if current is None or old.version_label != current.version_label:
            self.events.retired(endpoint.name, old)
        if before is not None and before.key != old.key and (current is None or before.key != current.key):
            self.loader.cache.unpin(before.key)

    async def fail(
        self, endpoint: Endpoint, role: Role, exc: BaseException, actor: str, resolved: ResolvedModel | None
    ) -> None:
        """Show a failed deploy or follow on the role's slot, in the history, the ledger and the
        deploy metrics. The slot keeps serving what it served."""
        message = f"{type(exc).__name__}: {exc}"
        refusal = getattr(getattr(exc, "verdict", None), "refusal", None)  # a SignatureRefusedError's
        if refusal is not None:
            self.events.signature_refused(endpoint.name, str(role), str(refusal))
        slot = endpoint.slot(role)
        if slot is not None:
            slot.last_error = message
        endpoint.note(action_name(role, "failed", " "), error=message, version=resolved.version if resolved else None)
        if resolved is None:
            return  # nothing was attempted (e.g. the registry is down): not a ledger event
        live = slot.current if slot is not None else None
        await self.record(endpoint.name, "failed", actor, target_ref(resolved), live.version_ref if live else None,
                          error=message, role=role)  # fmt: skip
        self.events.deployed(endpoint.name, action_name(role, "failed"), None)

    async def follow(self, endpoint: Endpoint, slot: Slot) -> None:
        """Re-resolve ``slot``'s reference, if it follows one (or never loaded, or serves a local
        pin the registry has not vouched for yet), and swap on a move. The caller holds the lock."""
        current = slot.current
        if not (slot.follow or current is None or from_pin(current.resolved.notes)):
            return
        resolved = None
        try:
            # A slot that serves shows an outage as last_error; one that never loaded may start
            # from its local pin.
            resolved = await asyncio.to_thread(self.loader.resolve, slot.model_uri, allow_pin=current is None)
            key = resolved.weights.cache_key
            if slot.held_key is not None:
                if key == slot.held_key:
                    slot.last_error = None
                    return  # the reference still names what a promote replaced: hold
                slot.held_key = None  # it moved: follow it from here on
            if current is not None and key == current.key:
                slot.last_error, slot.failed_key = None, None  # the registry answers, nothing moved
                if from_pin(current.resolved.notes):
                    self._reconcile(endpoint, slot, current, resolved)
                return
            if current is None:
                slot.follow = resolved.moves if slot.requested_follow is None else slot.requested_follow
            if slot.failed_key == key:
                return  # this exact version already failed; wait for the reference to move
            with tracing.deploy_span(endpoint.name, str(slot.role), slot.model_uri, "follow"):
                tracing.annotate(model_version=resolved.version, weights_commit=resolved.weights_commit,
                                 dataset_commit=resolved.dataset_commit)  # fmt: skip
                await self.switch(endpoint, dataclasses.replace(slot), resolved, "follow")
        except Exception as exc:
            await self.fail(endpoint, slot.role, exc, "follow", resolved)
            installed = endpoint.slot(slot.role)
            if resolved is not None and installed is not None:
                installed.failed_key = resolved.weights.cache_key

    @staticmethod
    def _reconcile(endpoint: Endpoint, slot: Slot, current: Deployment, resolved: ResolvedModel) -> None:
        """Served from a local pin since a restart: the registry now vouches for the same version,
        so its lineage replaces the pin's. What the loader read from the version's files (flavors,
        signature) stays: the registry's answer does not carry it, and the same files say the same."""
        served = current.resolved
        vouched = dataclasses.replace(
            resolved, flavors=served.flavors, signature=served.signature, input_example_file=served.input_example_file
        )
        slot.current = current.with_resolved(vouched)  # one assignment: requests see one lineage or the other
        endpoint.note(action_name(slot.role, "reconciled", " "), version=resolved.version)
