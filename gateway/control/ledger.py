"""The deployment ledger: an append-only record of every deploy, swap, rollback, undeploy and
failed attempt, kept in the store so that every replica shares one history.

Each event is one small JSON file committed to ``lockgate://lockgate-ledger@main/events/
<endpoint>/<time>-<id>.json``. Commits go through the store's compare-and-swap, so replicas
appending at the same moment never lose an event. If the store is unreachable, events wait
in memory and are flushed on the next append. An event that cannot be written for any other
reason is set aside (logged, counted in ``lockgate_ledger_events_rejected_total``) so that it
never holds back the others. Appends are blocking store commits: callers on the event loop run
them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lockgate.gateway.serving.version_ref import VersionRef
from lockgate.store import Store, StoreError
from lockgate.store.errors import BackendError, RefConflictError
from lockgate.store.layout import LEDGER_REPO
from lockgate.store.objects import format_time, parse_time

LEDGER_BRANCH = "main"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerEvent:
    endpoint: str
    # deploy | swap | rollback | update (same version, new reference or share) | undeploy | failed
    # | promote (the canary becomes the primary) | abort (a canary or shadow is dropped)
    action: str
    actor: str
    time: str
    to: VersionRef | None
    from_: VersionRef | None = None
    error: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    role: str = "primary"  # primary | canary | shadow (events before traffic policies: primary)
    percent: float | None = None  # a canary's share of the traffic

    @property
    def moment(self) -> datetime:
        return parse_time(self.time)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEvent:
        def ref(value: dict[str, Any] | None) -> VersionRef | None:
            return VersionRef(**value) if value else None

        return cls(
            endpoint=data["endpoint"],
            action=data["action"],
            actor=data["actor"],
            time=data["time"],
            to=ref(data.get("to")),
            from_=ref(data.get("from")),
            error=data.get("error"),
            id=data.get("id", ""),
            role=data.get("role", "primary"),
            percent=data.get("percent"),
        )


@dataclass(frozen=True)
class PolicyAt:
    """The whole traffic policy of an endpoint at one moment: the event behind each role."""

    primary: LedgerEvent | None
    canary: LedgerEvent | None
    shadow: LedgerEvent | None

    def as_dict(self) -> dict[str, Any]:
        canary_share = float(self.canary.percent or 0.0) if self.canary else 0.0

        def entry(event: LedgerEvent | None, share: float) -> dict[str, Any] | None:
            return None if event is None else event.as_dict() | {"share": share}

        return {
            "primary": entry(self.primary, 100.0 - canary_share),
            "canary": entry(self.canary, canary_share),
            # A shadow answers no client: it gets a copy of every primary request.
            "shadow": entry(self.shadow, 0.0),
        }


SERVING_ACTIONS = {"deploy", "swap", "rollback", "update", "promote"}
ROLES = ("primary", "canary", "shadow")
# Failures that pass: the store is down or busy. Anything else means the event cannot be written.
_TRANSIENT = (BackendError, RefConflictError)


class Ledger:
    def __init__(self, open_store: Callable[[], Store]) -> None:
        self.open_store = open_store  # the store the ledger is kept in (the lineage route reads it too)
        self._pending: list[LedgerEvent] = []
        self._lock = threading.Lock()
        # Events that can never be written (not an outage): kept for inspection, counted.
        self.rejected: deque[tuple[LedgerEvent, str]] = deque(maxlen=1000)
        self.rejected_total = 0

    def record(
        self,
        endpoint: str,
        /,
        action: str,
        actor: str,
        to: VersionRef | None,
        from_: VersionRef | None = None,
        *,
        error: str | None = None,
        role: str = "primary",
        percent: float | None = None,
    ) -> LedgerEvent:
        event = LedgerEvent(
            endpoint, action, actor, format_time(datetime.now(UTC)), to, from_, error, role=role, percent=percent
        )
        with self._lock:
            self._pending.append(event)
            self._flush()
        return event

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _flush(self) -> None:
        if not self._pending:
            return
        try:
            store = self.open_store()
            self._commit(store, self._pending)
        except _TRANSIENT as exc:
            _log.warning("ledger: %d event(s) wait in memory, the store is unreachable: %s", len(self._pending), exc)
            return
        except StoreError:
            # Not an outage: some event cannot be written at all. Find it, set it aside, and
            # write the rest; one bad event must never hold back every other endpoint's.
            self._pending = self._isolate(store)
            return
        self._pending.clear()

    def _isolate(self, store: Store) -> list[LedgerEvent]:
        still_pending = []
        for event in self._pending:
            try:
                self._commit(store, [event])
            except _TRANSIENT:
                still_pending.append(event)
            except StoreError as exc:
                self.rejected_total += 1
                self.rejected.append((event, str(exc)))
                _log.error("ledger: event %s of endpoint %r set aside, it cannot be written: %s", event.id,
                           event.endpoint, exc)  # fmt: skip
        return still_pending

    @staticmethod
    def _commit(store: Store, events: list[LedgerEvent]) -> None:
        files = [
            (f"events/{e.endpoint}/{e.time}-{e.id}.json", orjson.dumps(e.as_dict(), option=orjson.OPT_SORT_KEYS))
            for e in events
        ]
        # A garbage collection holding the store is an outage like any other: the events wait
        # in memory (a deploy must not wait minutes for a sweep to finish).
        store.commit_files(LEDGER_REPO, LEDGER_BRANCH, files, message=f"ledger: {len(files)} event(s)",
                           author="lockgate-gateway", gc_wait=2.0)  # fmt: skip

    def events(self, endpoint: str | None = None) -> list[LedgerEvent]:
        """Every event (of one endpoint), oldest first, including ones not yet flushed."""
        store = self.open_store()
        out: list[LedgerEvent] = []
        try:
            commit = store.resolve(LEDGER_REPO, LEDGER_BRANCH)
            prefix = f"events/{endpoint}" if endpoint else "events"
            for path in sorted(store.list_files(commit, prefix)):
                out.append(LedgerEvent.from_dict(orjson.loads(store.read_file(commit, path))))
        except StoreError:
            pass  # no ledger yet, or nothing for this endpoint
        with self._lock:
            out.extend(e for e in self._pending if endpoint is None or e.endpoint == endpoint)
        return sorted(out, key=lambda e: (e.time, e.id))

    def serving_at(self, endpoint: str, moment: datetime) -> LedgerEvent | None:
        """The event that put the version serving ``endpoint`` at ``moment`` in place, or
        None if nothing served it then (not deployed yet, or undeployed)."""
        return self.policy_at(endpoint, moment).primary

    def policy_at(self, endpoint: str, moment: datetime) -> PolicyAt:
        """Which version served each role of ``endpoint`` at ``moment``, with its share."""
        state: dict[str, LedgerEvent | None] = dict.fromkeys(ROLES)
        for event in self.events(endpoint):
            if event.moment > moment:
                break
            if event.action == "undeploy":
                state = dict.fromkeys(ROLES)
            elif event.action == "abort":
                state[event.role] = None
            elif event.action in SERVING_ACTIONS and event.role in state:
                state[event.role] = event
                if event.action == "promote":
                    state["canary"] = None  # the canary is the primary now
        return PolicyAt(state["primary"], state["canary"], state["shadow"])
