"""The loader's one entry point: model URI -> resolved version -> local files -> warmed model."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lockgate.loader.cache import FetchReport, ModelCache
from lockgate.loader.errors import ModelCodeRefusedError, ModelLoadError, RegistryUnavailableError
from lockgate.loader.flavors import LoadedModel, load_input_example, load_model, read_metadata
from lockgate.loader.load_policy import ALLOW_CODE, LoadPolicy
from lockgate.loader.local_pins import PIN_FIRST_NOTE, LocalPins
from lockgate.loader.materialized_copy import is_materialized_copy, read_copy
from lockgate.loader.registry import Resolver
from lockgate.loader.resolved import ResolvedModel
from lockgate.loader.signing.check import SignatureChecker
from lockgate.loader.signing.policy import SignatureVerdict
from lockgate.store import Store

ProgressCallback = Callable[[int], None]


def _untimed(_name: str) -> AbstractContextManager[Any]:
    return nullcontext()


@dataclass
class LoadReport:
    fetch: FetchReport
    load_seconds: float
    warmup_seconds: float
    total_seconds: float
    # The native model was left to load on first use (a warm restart serving its checked graph).
    native_deferred: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.fetch.as_dict(),
            "load_seconds": self.load_seconds,
            "warmup_seconds": self.warmup_seconds,
            "total_seconds": self.total_seconds,
            "native_deferred": self.native_deferred,
        }


@dataclass
class ServableModel:
    resolved: ResolvedModel
    model: LoadedModel
    report: LoadReport
    directory: Path
    signature: SignatureVerdict | None = None  # the signature check's verdict, when signatures are checked

    def load_native(self) -> None:
        """Load a deferred native model now, as part of the deploy: its time joins the load
        report, and a failure fails the deploy (``ModelLoadError``)."""
        if self.model.native_loaded:
            return
        self.model.load_native()
        self.report.load_seconds += self.model.native_seconds
        self.report.total_seconds += self.model.native_seconds
        self.report.native_deferred = False


class ModelLoader:
    def __init__(
        self,
        resolver: Resolver,
        cache: ModelCache,
        open_store: Callable[[], Store],
        policy: LoadPolicy = ALLOW_CODE,
        signatures: SignatureChecker | None = None,
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.policy = policy
        self.signatures = signatures  # None: signatures are not checked
        self._open_store = open_store
        self.pins = LocalPins(cache.directory / "pins")

    def resolve(self, uri: str, *, allow_pin: bool = False, prefer_pin: bool = False) -> ResolvedModel:
        """Resolve through the registry, and remember the answer. With ``allow_pin`` and the
        registry unreachable: the version this URI last resolved to, if the cache holds it
        complete (verified), with a note saying so. With ``prefer_pin`` (a warm restart) that
        pin is taken without asking the registry at all; the caller reconciles later. A
        directory ``lockgate materialize`` wrote resolves to the version its lineage file
        names, without the registry."""
        if is_materialized_copy(uri):
            return read_copy(uri)[0]
        if prefer_pin:
            pinned = self.pins.recall(uri, PIN_FIRST_NOTE)
            if pinned is not None and self.cache.is_complete(pinned.weights.cache_key):
                return pinned
        try:
            resolved = self.resolver.resolve(uri)
        except RegistryUnavailableError:
            if not allow_pin:
                raise
            pinned = self.pins.recall(uri)
            if pinned is None or not self.cache.is_complete(pinned.weights.cache_key):
                raise
            return pinned
        self.pins.remember(resolved)
        return resolved

    def load(
        self,
        resolved: ResolvedModel,
        *,
        progress: ProgressCallback | None = None,
        warm_up: bool = True,
        prefer_pyfunc: bool = False,
        defer_native: bool = False,
        phase: Callable[[str], AbstractContextManager[Any]] = _untimed,
    ) -> ServableModel:
        """Fetch (only what is missing), load with the right flavor and warm up on the input
        example. Blocking: call it off the event loop. Nothing is returned half-ready: with
        ``defer_native`` the files are fetched and verified, the metadata and input example
        read, and the native model loads (and warms up) on first use (``LoadedModel``).
        ``phase(name)`` wraps each phase, ``fetch`` and ``load`` (the gateway's trace spans)."""
        started = time.perf_counter()
        with phase("fetch"):
            directory, fetch = self._fetch(resolved, progress)
        signature = None
        if self.signatures is not None:
            # Before anything reads the files: a refused version's model is never loaded.
            with phase("verify"):
                derived = self.cache.derived_dir(resolved.weights.cache_key)
                signature = self.signatures.check(resolved, directory, derived)
        with phase("load"):
            servable = self._load(
                resolved,
                directory,
                fetch,
                started,
                warm_up=warm_up,
                prefer_pyfunc=prefer_pyfunc,
                defer_native=defer_native,
            )
        servable.signature = signature
        return servable

    def _fetch(self, resolved: ResolvedModel, progress: ProgressCallback | None) -> tuple[Path, FetchReport]:
        if resolved.local_copy is not None:
            copied, files = read_copy(resolved.uri)
            if copied.weights != resolved.weights:  # re-materialized since it was resolved
                raise ModelLoadError(f"{resolved.uri} now holds another version than it did when it was resolved")
            return self.cache.adopt(resolved.weights, Path(resolved.local_copy), files)
        return self.cache.materialize(self._open_store, resolved.weights, progress=progress)

    def _load(
        self,
        resolved: ResolvedModel,
        directory: Path,
        fetch: FetchReport,
        started: float,
        *,
        warm_up: bool,
        prefer_pyfunc: bool,
        defer_native: bool,
    ) -> ServableModel:
        metadata = read_metadata(directory)
        resolved = replace(
            resolved,
            flavors=metadata.flavor_names,
            signature=metadata.signature,
            input_example_file=metadata.input_example_file,
        )
        load_started = time.perf_counter()
        try:
            model = load_model(
                directory, prefer_pyfunc=prefer_pyfunc, defer_native=True, metadata=metadata, policy=self.policy
            )
        except ModelCodeRefusedError as exc:
            where = f"{resolved.name} version {resolved.version}" if resolved.version else resolved.uri
            raise ModelCodeRefusedError(f"{where} {exc}") from None
        model.input_example = load_input_example(directory, metadata)
        if not defer_native:
            model.load_native(warm_up=False)
        loaded = time.perf_counter()
        if warm_up and not defer_native and model.input_example is not None:
            try:
                model.predict(model.input_example)
            except Exception as exc:
                raise ModelLoadError(
                    f"version {resolved.version or resolved.uri} fails to predict on its own input example: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        done = time.perf_counter()
        report = LoadReport(fetch, loaded - load_started, done - loaded, done - started, native_deferred=defer_native)
        return ServableModel(resolved, model, report, directory)

    def resolve_and_load(self, uri: str, **kwargs: Any) -> ServableModel:
        return self.load(self.resolve(uri), **kwargs)
