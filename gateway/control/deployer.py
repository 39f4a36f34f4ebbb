"""Deploying, swapping, rolling back and following: the gateway's control plane.

The deployer decides what each endpoint should serve; ``gateway.control.slot_control`` puts a
version into a slot (the primary, the canary or the shadow, one type) and takes it out, and
``gateway.control.role_control`` turns canary and shadow specs into slot changes. Calls go down
only: deployer, then role control, then slot control. Failures leave the current deployment
serving and show on the endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

from lockgate.gateway import tracing
from lockgate.gateway.control.deploy_events import DeployEvents
from lockgate.gateway.control.endpoint_names import check_endpoint_name
from lockgate.gateway.control.ledger import Ledger
from lockgate.gateway.control.role_control import RoleControl
from lockgate.gateway.control.slot_control import Preparer, SlotControl
from lockgate.gateway.control.traffic_policy import KEEP, CanarySpec, Keep, ShadowSpec
from lockgate.gateway.errors import (
    EndpointNotFoundError,
    NoCanaryError,
    NoRollbackTargetError,
    PolicyNotAppliedError,
    status_for,
)
from lockgate.gateway.serving.endpoints import Deployment, Endpoint, Slot
from lockgate.gateway.serving.roles import CANARY, PRIMARY, SHADOW
from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.loader.model_loader import ModelLoader

_log = logging.getLogger(__name__)


class Deployer:
    def __init__(
        self,
        loader: ModelLoader,
        ledger: Ledger,
        *,
        drain_timeout: float = 30.0,
        preparer: Preparer | None = None,
        events: DeployEvents | None = None,
    ) -> None:
        self.loader = loader
        self.ledger = ledger
        self.endpoints: dict[str, Endpoint] = {}
        # The preparer makes a loaded model a complete deployment (in the worker thread);
        # subscribers to the events (metrics, ...) hear of every deploy and retirement.
        self.events = events or DeployEvents()
        prepare: Preparer = preparer or (lambda servable, options: Deployment(servable, options=options))
        self.slots = SlotControl(loader, ledger, self.events, prepare, drain_timeout=drain_timeout)
        self.roles = RoleControl(self.slots)  # the canary and shadow of each endpoint

    @property
    def drain_timeout(self) -> float:
        return self.slots.drain_timeout

    def readiness(self, configured: list[str]) -> tuple[list[str], list[str]]:
        """(the endpoints readiness is about, those of them with no loaded version yet): the
        configured ones, or every deployed one when none is configured."""
        names = configured or list(self.endpoints)
        waiting = [n for n in names if n not in self.endpoints or self.endpoints[n].current is None]
        return names, waiting

    def get(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(self.endpoints) or "none"
            raise EndpointNotFoundError(f"no endpoint {name!r} (endpoints: {known})")
        return endpoint

    async def deploy(
        self,
        name: str,
        model_uri: str | None,
        follow: bool | None = None,
        *,
        actor: str = "gateway",
        keep_on_failure: bool = False,
        options: ServingOptions | None = None,
        canary: CanarySpec | Keep | None = KEEP,
        shadow: ShadowSpec | Keep | None = KEEP,
        prefer_pin: bool = False,
    ) -> Endpoint:
        """Create or redeploy ``name`` from ``model_uri``, and set, drop (None) or keep (KEEP)
        its canary and shadow. ``model_uri`` None changes only the policy of an existing
        endpoint. On a redeploy failure the current version keeps serving and the error is
        raised. A new endpoint whose first deploy fails is dropped, unless ``keep_on_failure``
        (configured endpoints: retried by the follow loop until they load, and shown as failed
        meanwhile). ``prefer_pin`` (a gateway's start) serves the version the URI last resolved
        to, complete in the cache, without waiting for the registry; the follow loop reconciles."""
        check_endpoint_name(name)  # every entry point checks too; this is the one no caller skips
        if model_uri is None:
            endpoint = self.get(name)
            async with endpoint.lock:
                await self.roles.apply(endpoint, canary, shadow, actor, keep_on_failure=keep_on_failure)
            return endpoint
        existing = self.endpoints.get(name)
        created = existing is None
        endpoint = existing if existing is not None else Endpoint.create(name, model_uri)
        self.endpoints[name] = endpoint
        async with endpoint.lock:
            await self._deploy_primary(endpoint, model_uri, follow=follow, actor=actor, options=options,
                                       created=created, keep_on_failure=keep_on_failure,
                                       prefer_pin=prefer_pin)  # fmt: skip
            try:
                await self.roles.apply(endpoint, canary, shadow, actor, keep_on_failure=keep_on_failure)
            except Exception as exc:
                # The primary did move: say so, or the caller would think nothing changed.
                status, code = status_for(exc)
                serving = endpoint.current.version_label if endpoint.current else "nothing"
                raise PolicyNotAppliedError(
                    f"the primary of {name!r} now serves version {serving} of {model_uri}, but its traffic "
                    f"policy was not changed: {type(exc).__name__}: {exc}",
                    status,
                    code,
                ) from exc
        return endpoint

    async def _deploy_primary(
        self,
        endpoint: Endpoint,
        model_uri: str,
        *,
        follow: bool | None,
        actor: str,
        options: ServingOptions | None,
        created: bool,
        keep_on_failure: bool,
        prefer_pin: bool = False,
    ) -> None:
        previous_options = endpoint.options
        if options is not None:
            endpoint.options = options
        resolved = None
        try:
            with tracing.deploy_span(endpoint.name, str(PRIMARY), model_uri, actor):
                # A deploy may fall back to the version this URI last resolved to when the
                # registry is down (a restart during an outage): the note on it says so.
                resolved = await self.slots.resolve(model_uri, allow_pin=True, prefer_pin=prefer_pin and created)
                # An explicit deploy ends the hold a promote set (a fresh slot has none).
                fresh = Slot(PRIMARY, model_uri, resolved.moves if follow is None else follow, requested_follow=follow)
                await self.slots.switch(endpoint, fresh, resolved, actor)
        except Exception as exc:
            endpoint.options = previous_options
            await self.slots.fail(endpoint, PRIMARY, exc, actor, resolved)
            if endpoint.current is None:
                # Never loaded: shown failed, under the reference asked for; follow retries it.
                endpoint.install(Slot(PRIMARY, model_uri, bool(follow), requested_follow=follow, status="failed",
                                      last_error=endpoint.last_error), PRIMARY)  # fmt: skip
                if created and not keep_on_failure:
                    self.endpoints.pop(endpoint.name, None)
            raise

    # -- rollback and undeploy ----------------------------------------------------------------

    async def rollback(self, name: str, actor: str = "gateway") -> Endpoint:
        endpoint = self.get(name)
        async with endpoint.lock:
            target = endpoint.previous
            if target is None:
                raise NoRollbackTargetError(
                    f"endpoint {name!r} has no previous version to roll back to: it has served only "
                    f"{endpoint.current.version_label if endpoint.current else 'nothing'} since this gateway "
                    "started. Deploy the version you want instead: lockgate deploy MODEL_URI --name "
                    f"{name}"
                )
            # The rollback target is still pinned in the cache: this costs zero bytes.
            deployment = await self.slots.load(target.resolved, endpoint.options)
            old = endpoint.current
            # A rollback pins the endpoint (redeploy to follow again). The reference shown is the
            # one the restored version came from, so model_uri and version never contradict.
            endpoint.install(Slot(PRIMARY, target.resolved.uri, current=deployment, status="ready"), PRIMARY)
            await self.slots.record(name, "rollback", actor, deployment.version_ref, old.version_ref if old else None)
            self.events.deployed(name, "rollback", deployment)
            endpoint.note(
                "rollback",
                version=deployment.resolved.version,
                bytes_fetched=deployment.servable.report.fetch.bytes_fetched,
            )
            if old is not None:
                await self.slots.retire(endpoint, PRIMARY, old)  # old becomes the rollback target
        return endpoint

    async def promote(self, name: str, actor: str = "gateway") -> Endpoint:
        """Make the live canary the primary: zero bytes fetched, nothing loaded (it is serving
        already). The old primary becomes the rollback target. The primary keeps its own
        reference (say ``@champion``) and follow mode, but holds the promoted version until
        that reference moves: the registry still names the old version, and following it back
        would undo the promote. Move the alias in the registry to make the promote permanent."""
        endpoint = self.get(name)
        async with endpoint.lock:
            slot = endpoint.canary
            if slot is None or slot.current is None:
                state = "no canary" if slot is None else f"a canary that is {slot.status}: {slot.last_error or ''}"
                raise NoCanaryError(f"endpoint {name!r} has {state.rstrip(': ')}; nothing to promote")
            deployment, old = slot.current, endpoint.current
            promoted = dataclasses.replace(
                endpoint.primary, current=deployment, status="ready", last_error=None, failed_key=None,
                held_key=old.key if old is not None else None,  # what the primary's reference names now
            )  # fmt: skip
            # The switch: every request reaches this version now (no await between the two).
            endpoint.install(promoted, PRIMARY)
            endpoint.install(None, CANARY)
            await self.slots.record(name, "promote", actor, deployment.version_ref_for(endpoint.model_uri),
                                    old.version_ref if old else None)  # fmt: skip
            self.events.deployed(name, "promote", None)  # nothing was loaded
            self.events.retired(name, deployment, role=CANARY)  # its canary series end
            endpoint.note("promote", version=deployment.version_label, from_role=CANARY, bytes_fetched=0)
            if old is not None:
                await self.slots.retire(endpoint, PRIMARY, old)
        return endpoint

    async def abort(self, name: str, actor: str = "gateway") -> Endpoint:
        """Drop the canary and the shadow: the primary takes all the traffic again."""
        endpoint = self.get(name)
        async with endpoint.lock:
            await self.roles.apply(endpoint, None, None, actor)
        return endpoint

    async def undeploy(self, name: str, actor: str = "gateway") -> None:
        endpoint = self.get(name)
        async with endpoint.lock:
            del self.endpoints[name]
            old = endpoint.current
            endpoint.install(dataclasses.replace(endpoint.primary, current=None), PRIMARY)
            await self.slots.record(name, "undeploy", actor, None, old.version_ref if old else None)
            self.events.deployed(name, "undeploy", None)
            for role in (CANARY, SHADOW):  # the undeploy event ends every role in the ledger
                await self.roles.drop(endpoint, role, actor, record=False)
            for deployment in (old, endpoint.previous):
                if deployment is not None:
                    await deployment.drained(self.drain_timeout)
                    deployment.close()
                    self.loader.cache.unpin(deployment.key)
                    self.events.retired(name, deployment)

    # -- follow mode --------------------------------------------------------------------------

    async def follow_once(self) -> None:
        """Re-resolve every following endpoint and role; swap where the answer moved."""
        for endpoint in list(self.endpoints.values()):
            if endpoint.lock.locked():
                continue
            async with endpoint.lock:
                await self._follow(endpoint)

    async def follow_now(self, names: list[str]) -> None:
        """Re-resolve these endpoints at once (a registry webhook named their model), through the
        poll's path. An endpoint busy with a deploy or a poll is waited for, not skipped: the
        event may be newer than what that poll read."""
        for name in names:
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                continue
            try:
                async with endpoint.lock:
                    await self._follow(endpoint)
            except Exception:  # a webhook's follow must never fail the others; the poll retries
                _log.exception("follow of %s after a webhook", name)

    async def _follow(self, endpoint: Endpoint) -> None:
        # Endpoints that never loaded (e.g. the registry was down at startup) are retried too,
        # and those serving a local pin the registry has not vouched for yet.
        endpoint.last_checked = datetime.now(UTC).isoformat()
        for slot in endpoint.slots():
            await self.slots.follow(endpoint, slot)

    async def follow_forever(self, interval: float, *, once: bool = False) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow_once()
            except Exception:  # the loop itself must never die
                _log.exception("follow loop")
            if once:
                return
