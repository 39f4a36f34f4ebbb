"""Turning a loaded model into a complete deployment, once, in the deploy's worker thread: the
input schema and column bound, the V2 outputs it offers, the skew baseline, the serving path
(ONNX graph and its check), the lean parser and the batcher. Each is worked out first; the
``Deployment`` is then built whole, in one call, and frozen. The deployer hands out only
deployments this made whole.

Work that need not delay readiness (MLflow's dependency check, a first ONNX conversion) runs in
the background after the gateway serves (``start_background_work``); at startup it would compete
with the path to ready for the GIL and the CPU. The one later change it makes to a deployment is
``Deployment.upgrade_path``: the checked graph replacing the native estimator, in one assignment.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from lockgate.gateway.serving.baseline_score import BaselineScore, baseline_score
from lockgate.gateway.serving.batcher import Batcher
from lockgate.gateway.serving.endpoints import Deployment, LiveState
from lockgate.gateway.serving.fast_request import NumericFrameParser
from lockgate.gateway.serving.scoring import input_schema, mlflow_frame, skew_observer, typed_skew_observer
from lockgate.gateway.serving.serving_options import ServingOptions
from lockgate.gateway.serving.serving_path import choose_serving_path, graph_first_path
from lockgate.gateway.serving.skew_setup import SkewSettings, setup_skew
from lockgate.gateway.serving.typed_request import TypedFrameParser, TypedRows
from lockgate.loader.baseline import training_data
from lockgate.loader.dependency_check import requirement_mismatches
from lockgate.loader.model_loader import ServableModel
from lockgate.monitoring.predict_sizes import PredictSizes
from lockgate.store import Store

_log = logging.getLogger(__name__)


class Preparer:
    def __init__(
        self,
        open_store: Callable[[], Store],
        derived_dir: Callable[[str], Path],
        find_derived: Callable[[str], Path | None],
        skew: SkewSettings,
        max_extra_columns: int,
        *,
        protocol_facts: Mapping[str, Callable[[Deployment], object]] | None = None,
    ) -> None:
        self._open_store = open_store
        # What each protocol works out of a version at deploy (V2: its outputs), by protocol, computed
        # by the protocol's own code into ``deployment.protocol_facts``: the preparer names no codec.
        self._protocol_facts = dict(protocol_facts or {})
        self._derived_dir = derived_dir  # ModelCache.derived_dir: a version's own artifacts
        self._find_derived = find_derived  # ModelCache.find_derived: one another version holds
        self._skew = skew
        self._max_extra_columns = max_extra_columns
        self._serving = threading.Event()

    def start_background_work(self) -> None:
        """Called once the gateway listens: background work of every deploy may now run."""
        self._serving.set()

    def __call__(self, servable: ServableModel, options: ServingOptions) -> Deployment:
        schema = input_schema(servable)
        names = schema.input_names() if schema is not None and schema.has_input_names() else []
        input_names = tuple(str(name) for name in names)
        data = training_data(self._open_store, servable.resolved)
        derived = self._derived_dir(servable.resolved.weights.cache_key)
        reference = mlflow_frame(servable, schema)
        path = None
        if not servable.model.native_loaded:
            # A version served before (a restart, a rollback) may serve its checked graph at once,
            # re-checked against the answers its check recorded; the native model loads after ready.
            path, why_not = graph_first_path(servable, options, data.sample, derived, reference_frame=reference)
            if path is None:
                _log.debug("version %s: the native model loads before ready: %s", servable.resolved.version, why_not)
                servable.load_native()  # a model that cannot load or warm up fails its deploy here
        if path is None:
            path = choose_serving_path(
                servable, options, data.sample, derived, convert=False, reference_frame=reference
            )
        skew = setup_skew(data, servable, derived, self._skew, self._find_derived)
        live = LiveState(path)
        predict_sizes = PredictSizes()
        parser: NumericFrameParser | TypedFrameParser | None = None
        batcher = None
        if path.predict is not None and path.columns is not None:
            typed = path.typed_parser
            parser = typed or NumericFrameParser(path.columns)
            batcher = Batcher(
                path.predict,
                name=servable.resolved.version or "none",
                enabled=path.row_wise if options.batching is None else options.batching,
                max_rows=options.max_batch_rows,
                max_wait_seconds=options.max_batch_wait_ms / 1000,
                inflight=lambda: live.inflight,
                # Typed rows merge column by column and reach the skew trackers as columns.
                after_batch=skew_observer(skew, path.columns) if typed is None else typed_skew_observer(skew, typed),
                concat=np.concatenate if typed is None else TypedRows.concat,
                sizes=predict_sizes,
            )
        whole = Deployment(
            servable,
            options=options,
            live=live,
            input_schema=schema,
            tensor_inputs=bool(schema is not None and schema.is_tensor_spec()),
            input_names=input_names,
            max_columns=len(input_names) + self._max_extra_columns,
            skew=skew,
            parser=parser,
            batcher=batcher,
            predict_sizes=predict_sizes,
        )
        try:
            # Each protocol's facts are worked out of the whole deployment, then frozen into it.
            facts = {protocol: learn(whole) for protocol, learn in self._protocol_facts.items()}
        except BaseException:
            whole.close()
            raise
        deployment = dataclasses.replace(whole, protocol_facts=MappingProxyType(facts))
        if not servable.model.native_loaded:
            self._in_background("native-load", self._load_native, deployment)
        self._in_background("dependency-check", self._check_dependencies, deployment)
        self._in_background("baseline-score", self._score_baseline, deployment)
        if path.onnx_pending and batcher is not None:
            self._in_background("onnx-convert", self._convert, deployment, options, data.sample, reference)
        return deployment

    def _in_background(self, name: str, work: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            self._serving.wait()
            work(*args)

        threading.Thread(target=run, daemon=True, name=name).start()

    @staticmethod
    def _load_native(deployment: Deployment) -> None:
        """Once the gateway serves: what MLflow's own path and V2 ``predict_proba`` need. A
        request that needs it sooner loads it itself (``LoadedModel.load_native``, once)."""
        if deployment.closed:
            return
        try:
            deployment.servable.model.load_native()
        except Exception as exc:  # its graph keeps serving; requests that need the native model fail
            _log.error("version %s: the native model failed to load: %s", deployment.version_label, exc)

    def _score_baseline(self, deployment: Deployment) -> None:
        if deployment.closed:
            return
        try:
            found = baseline_score(self._open_store, deployment.servable, deployment.options.target_column)
        except Exception as exc:  # a baseline is monitoring: it never fails a deploy
            found = BaselineScore("none", reason=f"the baseline score failed: {type(exc).__name__}: {exc}")
        deployment.live.baseline = found
        if found.reason:
            _log.info("version %s: no baseline score: %s", deployment.version_label, found.reason)

    @staticmethod
    def _check_dependencies(deployment: Deployment) -> None:
        try:
            found = requirement_mismatches(deployment.servable.directory)
        except Exception as exc:
            found = [f"the dependency check failed: {exc}"]
        deployment.live.dependency_warnings = found
        for message in found:
            _log.warning("version %s: %s", deployment.version_label, message)

    def _convert(
        self, deployment: Deployment, options: ServingOptions, sample: Any, reference: Callable[[bytes], Any]
    ) -> None:
        try:
            derived = self._derived_dir(deployment.key)
            path = choose_serving_path(
                deployment.servable, options, sample, derived, convert=True,
                reference_frame=reference, typed_parser=deployment.path.typed_parser,
            )  # fmt: skip
        except Exception as exc:  # the native path keeps serving; say why the fast path did not come
            path = dataclasses.replace(deployment.path, reason=f"ONNX conversion failed: {exc}", onnx_pending=False)
        deployment.upgrade_path(path)
        _log.info("version %s now served by %s (%s)", deployment.version_label, path.name, path.reason or "checked")
