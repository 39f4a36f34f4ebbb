"""Endpoint state: which deployment serves each endpoint, and the atomic switch between them.

A ``Deployment`` is one loaded, warmed-up version. An ``Endpoint`` points at its current
deployment; a request reads that pointer once and is served entirely by that deployment
(its in-flight count keeps it alive while a swap drains it). Switching is a single reference
assignment on the event loop, so no request ever sees a half-swapped endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from lockgate.gateway.serving.baseline_score import BaselineScore
from lockgate.gateway.serving.batcher import Batcher
from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.roles import CANARY, PRIMARY, Role
from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.gateway.serving.serving_path import ServingPath
from lockgate.gateway.serving.skew_setup import SkewSetup
from lockgate.gateway.serving.typed_request import TypedFrameParser
from lockgate.gateway.serving.version_ref import VersionRef
from lockgate.loader.model_loader import ServableModel
from lockgate.loader.resolved import ResolvedModel
from lockgate.monitoring.predict_sizes import PredictSizes

HISTORY = 20


@dataclass
class LiveState:
    """What changes on a deployment while it serves, and nothing else: the requests using it,
    whether it was retired, the serving path (a background ONNX conversion upgrades it once) and
    the dependency check's verdict (it runs after the gateway is ready)."""

    path: ServingPath
    inflight: int = 0
    closed: bool = False
    dependency_warnings: list[str] | None = None  # None: not checked yet
    baseline: BaselineScore | None = None  # the model's own score, worked out after ready


@dataclass(frozen=True)
class Deployment:
    """One version made whole by the preparer, and frozen: a request reads every fact of it
    without a lock, because none of them changes. Its ``live`` state is the one mutable part."""

    servable: ServableModel
    options: ServingOptions = field(default_factory=ServingOptions)
    live: LiveState = field(default_factory=lambda: LiveState(ServingPath("mlflow", "not prepared")))
    input_schema: Any = None
    # Whether input_schema is a tensor spec: worked out at deploy (MLflow's check walks every column).
    tensor_inputs: bool = False
    input_names: tuple[str, ...] = ()  # the signature's named columns (none for tensor signatures)
    max_columns: int = 1024  # the signature's columns plus LOCKGATE_MAX_EXTRA_COLUMNS
    # What each protocol worked out of this version at deploy, by protocol (V2: the outputs it
    # offers): computed by the protocol's own code, through the preparer, before any traffic.
    protocol_facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    skew: SkewSetup = field(default_factory=lambda: SkewSetup(None, None, "skew tracking is not set up"))
    # Set when the lean path applies: requests it can parse skip MLflow's parser.
    parser: NumericFrameParser | TypedFrameParser | None = None
    batcher: Batcher | None = None
    predict_sizes: PredictSizes = field(default_factory=PredictSizes)  # rows per predict call
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # Every answer carries the lineage: worked out once, here (the resolved model never changes
    # for a deployment; a reconcile makes a new one, ``with_resolved``).
    _lineage: dict[str, str] = field(init=False, repr=False, compare=False)
    _headers: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = self.servable.resolved
        lineage = {
            "model_version": r.version or "none",
            "weights_commit": r.weights_commit or "none",
            "dataset_commit": r.dataset_commit or "none",
        }
        signature = self.servable.signature
        if signature is not None and signature.signer:  # signatures are checked: who signed what serves
            lineage["signer"] = signature.signer
        headers = {"X-Lockgate-" + key.replace("_", "-").title(): value for key, value in lineage.items()}
        object.__setattr__(self, "_lineage", lineage)
        object.__setattr__(self, "_headers", headers)

    def with_resolved(self, resolved: ResolvedModel) -> Deployment:
        """The same loaded version under new lineage (the registry vouching for a local pin):
        it shares the model, the batcher and the live state with this one."""
        return dataclasses.replace(self, servable=dataclasses.replace(self.servable, resolved=resolved))

    @property
    def path(self) -> ServingPath:
        return self.live.path

    @property
    def inflight(self) -> int:
        return self.live.inflight

    @property
    def closed(self) -> bool:
        return self.live.closed

    @property
    def dependency_warnings(self) -> list[str] | None:
        return self.live.dependency_warnings

    def upgrade_path(self, path: ServingPath) -> None:
        """Adopt the path a background ONNX conversion produced (or its verdict, if it failed)."""
        if self.live.closed:
            return
        if path.predict is not None and self.batcher is not None:
            self.batcher.use(path.predict)
        self.live.path = path

    @property
    def serving_path(self) -> str:
        return self.path.name

    def close(self) -> None:
        """Release the predict thread once this version can no longer take traffic."""
        self.live.closed = True
        if self.batcher is not None:
            self.batcher.close()

    def describe_load_policy(self) -> dict[str, Any]:
        """Which safe-load rule applied, the flavor it loaded, and the flavors it passed over."""
        model = self.servable.model
        return {**model.policy.as_dict(), "loaded_flavor": model.flavor, "passed_over": dict(model.passed_over)}

    def describe_path(self) -> dict[str, Any]:
        batcher = self.batcher
        path = self.path
        return {
            "name": path.name,
            "reason": path.reason,
            "onnx_pending": path.onnx_pending,
            "lean_parsing": self.parser is not None,
            "typed_columns": None
            if path.typed_parser is None
            else {spec.name: spec.kind for spec in path.typed_parser.specs},
            # The evidence that the path is exact (or its declared tolerance): the ONNX graph's check
            # or the tree engine's (``onnx_check`` is the older name, kept for existing readers).
            "check": path.check or None,
            "onnx_check": path.check or None,
            "options": self.options.as_dict(),
            "batching": None
            if batcher is None
            else {
                "enabled": batcher.enabled,
                "max_rows": batcher.max_rows,
                "max_wait_ms": batcher.max_wait_seconds * 1000,
                "batches": batcher.stats.batches,
                "requests": batcher.stats.requests,
                "rows": batcher.stats.rows,
                "largest_batch_rows": batcher.stats.largest_batch_rows,
            },
        }

    @property
    def version_label(self) -> str:
        return self.resolved.version or "none"

    @property
    def resolved(self) -> ResolvedModel:
        return self.servable.resolved

    @property
    def key(self) -> str:
        return self.resolved.weights.cache_key

    @property
    def version_ref(self) -> VersionRef:
        r = self.resolved
        return VersionRef(r.version, r.weights_commit, r.dataset_commit, r.weights.uri, r.uri)

    def version_ref_for(self, reference: str) -> VersionRef:
        """The version, under the reference the role that serves it follows."""
        return dataclasses.replace(self.version_ref, reference=reference)

    def lineage(self) -> dict[str, str]:
        """The version and its commits, as every answer carries them (a copy: callers add to it)."""
        return dict(self._lineage)

    def headers(self) -> dict[str, str]:
        """The lineage as response headers: ``X-Lockgate-Model-Version`` and so on (a copy)."""
        return dict(self._headers)

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is using this deployment (or ``timeout`` passes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.live.inflight > 0:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True


@dataclass
class Slot:
    """One role of an endpoint (primary, canary or shadow): the reference it follows and the
    version it serves now. Every role is this one type, so switching, retiring, following and
    failing are written once (``gateway.control.slot_control``). A deploy builds a fresh slot and
    installs it only once its version is live: a failed deploy leaves the old slot as it was."""

    role: Role
    model_uri: str
    follow: bool = False
    percent: float = 0.0  # the canary's share; the primary takes the rest; a shadow mirrors all
    requested_follow: bool | None = None  # None: follow moving references
    current: Deployment | None = None
    status: str = "loading"
    last_error: str | None = None
    failed_key: str | None = None  # a version that failed; not retried until the reference moves
    # After a promote: the version the primary's own reference still names. Follow mode swaps
    # when the reference moves away from it, not back to it (see Deployer.promote).
    held_key: str | None = None

    @property
    def share(self) -> float | None:
        """The share the ledger records: a canary's percent, nothing for the other roles."""
        return self.percent if self.role == CANARY else None

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


@dataclass
class Endpoint:
    name: str
    primary: Slot
    options: ServingOptions = field(default_factory=ServingOptions)
    previous: Deployment | None = None  # the primary's rollback target
    canary: Slot | None = None
    shadow: Slot | None = None
    last_checked: str | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(cls, name: str, model_uri: str) -> Endpoint:
        return cls(name, Slot(PRIMARY, model_uri))

    # The primary's state, read as the endpoint's own (the request path reads ``current``).
    @property
    def current(self) -> Deployment | None:
        return self.primary.current

    @property
    def model_uri(self) -> str:
        return self.primary.model_uri

    @property
    def follow(self) -> bool:
        return self.primary.follow

    @property
    def status(self) -> str:
        return self.primary.status

    @property
    def last_error(self) -> str | None:
        return self.primary.last_error

    def slot(self, role: Role) -> Slot | None:
        return self.primary if role == PRIMARY else self.canary if role == CANARY else self.shadow

    def install(self, slot: Slot | None, role: Role) -> None:
        """Make ``slot`` the endpoint's ``role`` (None drops a canary or shadow): one assignment,
        so a request sees the old slot or the new one, never a mix."""
        if role == PRIMARY:
            if slot is None:
                raise ValueError("an endpoint always has a primary")
            self.primary = slot
        elif role == CANARY:
            self.canary = slot
        else:
            self.shadow = slot

    def roles(self) -> list[Slot]:
        """The canary and shadow, where set."""
        return [slot for slot in (self.canary, self.shadow) if slot is not None]

    def slots(self) -> list[Slot]:
        """Every role, the primary first."""
        return [self.primary, *self.roles()]

    def note(self, action: str, **details: Any) -> None:
        self.history.appendleft({"time": datetime.now(UTC).isoformat(), "action": action, **details})

    def describe(self) -> dict[str, Any]:
        current = self.current
        resolved = current.resolved if current else None
        return {
            "name": self.name,
            "status": self.status,
            "model_uri": self.model_uri,
            "follow": self.follow,
            "model_name": resolved.name if resolved else None,
            "version": resolved.version if resolved else None,
            "weights_commit": resolved.weights_commit if resolved else None,
            "weights_uri": resolved.weights.uri if resolved else None,
            "dataset_commit": resolved.dataset_commit if resolved else None,
            "dataset_uris": list(resolved.dataset_uris) if resolved else [],
            "run_id": resolved.run_id if resolved else None,
            "code_commit": resolved.code_commit if resolved else None,
            "flavors": list(resolved.flavors) if resolved else [],
            "load_policy": current.describe_load_policy() if current else None,
            "signature": current.servable.signature.as_dict() if current and current.servable.signature else None,
            "serving_path": current.serving_path if current else None,
            "serving": current.describe_path() if current else None,
            "loaded_at": current.loaded_at if current else None,
            "load_report": current.servable.report.as_dict() if current else None,
            "rollback_version": self.previous.resolved.version if self.previous else None,
            "skew": {
                "tracked": bool(current and current.skew.inputs),
                "features": list(current.skew.inputs.profile.feature_names) if current and current.skew.inputs else [],
                "predictions_tracked": bool(current and current.skew.predictions),
                "profile_cached": bool(current and current.skew.profile_cached),
                "reason": current.skew.reason if current else None,
            },
            "last_error": self.last_error,
            "last_checked": self.last_checked,
            "notes": list(resolved.notes) if resolved else [],
            "dependency_warnings": current.dependency_warnings if current else None,
            # None: not worked out yet (it runs after the gateway is ready).
            "baseline_score": current.live.baseline.as_dict() if current and current.live.baseline else None,
            "policy": self.describe_policy(),
            "history": list(self.history),
        }

    def describe_policy(self) -> dict[str, Any]:
        """Each role's reference, live version and share of the answers."""
        current = self.current
        canary_share = self.canary.percent if self.canary and self.canary.current else 0.0
        primary = {
            "role": "primary",
            "status": self.status,
            "model_uri": self.model_uri,
            "follow": self.follow,
            "version": current.resolved.version if current else None,
            "weights_commit": current.resolved.weights_commit if current else None,
            "dataset_commit": current.resolved.dataset_commit if current else None,
            "serving_path": current.serving_path if current else None,
            "percent": 100.0 - canary_share,
        }
        return {
            "primary": primary,
            "canary": self.canary.describe() if self.canary else None,
            "shadow": self.shadow.describe() if self.shadow else None,
        }
