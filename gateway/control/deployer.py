"""Deploying, swapping, rolling back and following: the gateway's control plane.

Every load happens in a worker thread (never on the event loop), is warmed up by the loader,
and only then is switched in. The old deployment drains its in-flight requests before it is
dropped. Failures leave the current deployment serving and show on the endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.control.deploy_events import DeployEvents
from gateway.control.endpoint_names import check_endpoint_name
from gateway.control.ledger import Ledger
from gateway.control.role_control import RoleControl
from gateway.control.traffic_policy import KEEP, CanarySpec, Keep, ShadowSpec
from gateway.errors import (
    EndpointNotFoundError,
    NoCanaryError,
    NoRollbackTargetError,
    PolicyNotAppliedError,
    status_for,
)
from gateway.serving.endpoints import Deployment, Endpoint
from gateway.serving.roles import CANARY, PRIMARY, SHADOW
from gateway.serving.serving_options import ServingOptions
from gateway.serving.version_ref import VersionRef
from loader.local_pins import from_pin
from loader.model_loader import ModelLoader, ServableModel
from loader.resolved import ResolvedModel

_log = logging.getLogger(__name__)
# Makes a loaded model a complete deployment: gateway.control.preparer.Preparer, or anything alike.
Preparer = Callable[[ServableModel, ServingOptions], Deployment]


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
        self.drain_timeout = drain_timeout
        # The preparer makes a loaded model a complete deployment (in the worker thread);
        # subscribers to the events (metrics, ...) hear of every deploy and retirement.
        self._prepare: Preparer = preparer or (lambda servable, options: Deployment(servable, options=options))
        self.events = events or DeployEvents()
        self.roles = RoleControl(self)  # the canary and shadow of each endpoint

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

    # -- loading ----------------------------------------------------------------------------

    async def load(self, resolved: ResolvedModel, options: ServingOptions) -> Deployment:
        def load() -> Deployment:
            # The preparer loads the native model, unless a checked graph can serve before it does.
            return self._prepare(self.loader.load(resolved, prefer_pyfunc=True, defer_native=True), options)

        return await asyncio.to_thread(load)

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
        endpoint = existing if existing is not None else Endpoint(name, model_uri, follow=False)
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
        endpoint.requested_follow = follow
        previous_uri, previous_follow = endpoint.model_uri, endpoint.follow
        try:
            # A deploy may fall back to the version this URI last resolved to when the
            # registry is down (a restart during an outage): the note on it says so.
            resolved = await asyncio.to_thread(
                self.loader.resolve, model_uri, allow_pin=True, prefer_pin=prefer_pin and created
            )
            endpoint.model_uri = model_uri
            endpoint.follow = resolved.moves if follow is None else follow
            endpoint.held_key = None  # an explicit deploy ends the hold a promote set
            reference_changed = not created and (previous_uri, previous_follow) != (model_uri, endpoint.follow)
            await self._switch_to(
                endpoint, resolved, "deploy", actor, previous_uri=previous_uri if reference_changed else None
            )
        except Exception as exc:
            endpoint.options = previous_options
            if endpoint.current is not None:
                # The old version keeps serving: so does the reference it was deployed from.
                endpoint.model_uri, endpoint.follow = previous_uri, previous_follow
            await self.failed(endpoint, exc, actor, resolved)
            if endpoint.current is None:
                endpoint.status = "failed"
                if created and not keep_on_failure:
                    self.endpoints.pop(endpoint.name, None)
            raise

    async def _switch_to(
        self, endpoint: Endpoint, resolved: ResolvedModel, action: str, actor: str, previous_uri: str | None = None
    ) -> None:
        """Serve ``resolved`` on ``endpoint``. ``previous_uri`` is set when a redeploy changed the
        reference or the follow setting: if the version itself is unchanged, that is recorded
        as an ``update`` (same version, new reference), so the ledger never misses a change."""
        current = endpoint.current
        if current is not None and current.key == resolved.weights.cache_key and current.options == endpoint.options:
            endpoint.status = "ready"
            if previous_uri is None:
                endpoint.note("unchanged", version=resolved.version)
                return
            to = dataclasses.replace(current.version_ref, reference=endpoint.model_uri)
            await self.record(endpoint.name, "update", actor, to, dataclasses.replace(to, reference=previous_uri))
            self.events.deployed(endpoint.name, "update", None)
            endpoint.note("update", version=resolved.version, model_uri=endpoint.model_uri, follow=endpoint.follow)
            return
        deployment = await self.load(resolved, endpoint.options)
        self.loader.cache.pin(deployment.key)
        old = endpoint.current
        # The switch: one assignment on the event loop. New requests see the new version now.
        endpoint.current = deployment
        endpoint.status = "ready"
        endpoint.last_error = None
        endpoint.failed_key = None
        kind = "swap" if old is not None and action == "deploy" else action
        await self.record(endpoint.name, kind, actor, deployment.version_ref, old.version_ref if old else None)
        self.events.deployed(endpoint.name, kind, deployment)
        endpoint.note(kind, version=resolved.version, weights_commit=resolved.weights_commit,
                      bytes_fetched=deployment.servable.report.fetch.bytes_fetched)  # fmt: skip
        if old is not None:
            await self._retire(endpoint, old)

    async def _retire(self, endpoint: Endpoint, old: Deployment) -> None:
        """Keep ``old`` as the rollback target once it has drained; unpin the one before it."""
        if not await old.drained(self.drain_timeout):
            _log.warning(
                "endpoint %s: version %s still busy after %ss", endpoint.name, old.resolved.version, self.drain_timeout
            )
        old.close()
        before = endpoint.previous
        endpoint.previous = old
        if endpoint.current is None or old.version_label != endpoint.current.version_label:
            self.events.retired(endpoint.name, old)
        if (
            before is not None
            and before.key != old.key
            and (endpoint.current is None or before.key != endpoint.current.key)
        ):
            self.loader.cache.unpin(before.key)

    async def record(
        self,
        endpoint: str,
        action: str,
        actor: str,
        to: VersionRef | None,
        from_: VersionRef | None,
        *,
        error: str | None = None,
        role: str = PRIMARY,
        percent: float | None = None,
    ) -> None:
        # A ledger append is a store commit: off the event loop, so predictions keep flowing.
        await asyncio.to_thread(
            self.ledger.record, endpoint, action, actor, to, from_, error=error, role=role, percent=percent
        )

    async def failed(
        self,
        endpoint: Endpoint,
        exc: BaseException,
        actor: str,
        resolved: ResolvedModel | None,
        *,
        role: str = PRIMARY,
    ) -> None:
        message = f"{type(exc).__name__}: {exc}"
        slot = None if role == PRIMARY else getattr(endpoint, role)
        if role == PRIMARY:
            endpoint.last_error = message
        elif slot is not None:
            slot.last_error = message
        endpoint.note("failed" if role == PRIMARY else f"{role} failed", error=message,
                      version=resolved.version if resolved else None)  # fmt: skip
        if resolved is None:
            return  # nothing was attempted (e.g. the registry is down): not a ledger event
        target = VersionRef(
            resolved.version, resolved.weights_commit, resolved.dataset_commit, resolved.weights.uri, resolved.uri
        )
        live = endpoint.current if role == PRIMARY else (slot.current if slot else None)
        await self.record(endpoint.name, "failed", actor, target, live.version_ref if live else None, error=message,
                          role=role)  # fmt: skip
        self.events.deployed(endpoint.name, "failed" if role == PRIMARY else f"{role}-failed", None)

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
            deployment = await self.load(target.resolved, endpoint.options)
            old = endpoint.current
            endpoint.current = deployment
            endpoint.follow = False  # a rollback pins the endpoint; redeploy to follow again
            # The reference shown is the one the restored version came from, so model_uri and
            # version never contradict each other.
            endpoint.model_uri = target.resolved.uri
            endpoint.status = "ready"
            await self.record(name, "rollback", actor, deployment.version_ref, old.version_ref if old else None)
            self.events.deployed(name, "rollback", deployment)
            endpoint.note(
                "rollback",
                version=deployment.resolved.version,
                bytes_fetched=deployment.servable.report.fetch.bytes_fetched,
            )
            if old is not None:
                await old.drained(self.drain_timeout)
                old.close()
                endpoint.previous = old
                if old.version_label != deployment.version_label:
                    self.events.retired(name, old)
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
            # Whatever the primary's reference names now is what the hold ignores.
            endpoint.held_key = old.key if old is not None else None
            endpoint.current = deployment  # the switch: every request reaches this version now
            endpoint.canary = None
            endpoint.status, endpoint.last_error, endpoint.failed_key = "ready", None, None
            await self.record(name, "promote", actor, deployment.version_ref_for(endpoint.model_uri),
                              old.version_ref if old else None)  # fmt: skip
            self.events.deployed(name, "promote", None)  # nothing was loaded
            self.events.retired(name, deployment, role=CANARY)  # its canary series end
            endpoint.note("promote", version=deployment.version_label, from_role=CANARY, bytes_fetched=0)
            if old is not None:
                await self._retire(endpoint, old)
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
            endpoint.current = None
            await self.record(name, "undeploy", actor, None, old.version_ref if old else None)
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
        if endpoint.follow or endpoint.current is None or from_pin(endpoint.current.resolved.notes):
            await self._follow_primary(endpoint)
        await self.roles.follow(endpoint)

    async def _follow_primary(self, endpoint: Endpoint) -> None:
        endpoint.last_checked = datetime.now(UTC).isoformat()
        resolved = None
        try:
            # An endpoint that serves shows an outage as last_error; one that never
            # loaded may start from its local pin.
            resolved = await asyncio.to_thread(
                self.loader.resolve, endpoint.model_uri, allow_pin=endpoint.current is None
            )
            key = resolved.weights.cache_key
            if endpoint.held_key is not None:
                if key == endpoint.held_key:
                    endpoint.last_error = None
                    return  # the reference still names what a promote replaced: hold
                endpoint.held_key = None  # it moved: follow it from here on
            if endpoint.current is not None and key == endpoint.current.key:
                endpoint.last_error = None  # the registry answers again, and nothing moved
                endpoint.failed_key = None
                if from_pin(endpoint.current.resolved.notes):
                    # Served from a local pin since a restart: the registry now vouches
                    # for the same version, so its lineage replaces the pin's. What the loader
                    # read from the version's files (flavors, signature) stays: the registry's
                    # answer does not carry it, and the same files say the same.
                    served = endpoint.current.servable.resolved
                    endpoint.current.servable.resolved = dataclasses.replace(
                        resolved,
                        flavors=served.flavors,
                        signature=served.signature,
                        input_example_file=served.input_example_file,
                    )
                    endpoint.note("reconciled", version=resolved.version)
                return
            if endpoint.current is None:
                requested = endpoint.requested_follow
                endpoint.follow = resolved.moves if requested is None else requested
            if endpoint.failed_key == key:
                return  # this exact version already failed; wait for the reference to move
            await self._switch_to(endpoint, resolved, "deploy", "follow")
        except Exception as exc:
            await self.failed(endpoint, exc, "follow", resolved)
            if resolved is not None:
                endpoint.failed_key = resolved.weights.cache_key

    async def follow_forever(self, interval: float, *, once: bool = False) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow_once()
            except Exception:  # the loop itself must never die
                _log.exception("follow loop")
            if once:
                return
