"""Composing loader and monitoring for one deployment's skew tracking.

The input profile is cached on disk by (dataset commit, feature set), with the version it serves
(evicted with it), so a redeploy, a restart or a rollback of that version does not rebuild it,
and a new version trained on the same data copies it from a version that has it.
The prediction baseline is the model's own predictions on a sample of its training rows.
Anything missing becomes a reason on the endpoint, not an error.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from lockgate.loader.baseline import TrainingData, prediction_values
from lockgate.loader.model_loader import ServableModel
from lockgate.monitoring.errors import ProfileError
from lockgate.monitoring.profile import BaselineProfile, build_profile, profile_from_dict, profile_to_dict
from lockgate.monitoring.skew import SkewTracker


@dataclass
class SkewSetup:
    inputs: SkewTracker | None
    predictions: SkewTracker | None
    reason: str | None
    profile_cached: bool = False


@dataclass(frozen=True)
class SkewSettings:
    window_seconds: float = 3600.0
    sub_windows: int = 12


def setup_skew(
    data: TrainingData,
    servable: ServableModel,
    derived: Path,
    settings: SkewSettings,
    find_shared: Callable[[str], Path | None] = lambda _relative: None,
) -> SkewSetup:
    """``data`` is ``loader.baseline.training_data`` for the deployment (read once per deploy:
    the ONNX equivalence check uses its sample too). The profile is kept in ``derived``, the
    version's own directory, and is evicted with it."""
    if not data.key:
        return SkewSetup(None, None, data.reason)
    relative = f"profiles/{data.key}.json"
    cached = derived / relative
    if not cached.is_file():
        # Another version trained on the same data built it already: copy it into this one's.
        shared = find_shared(relative)
        if shared is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared, cached)
    profile: BaselineProfile | None = None
    from_cache = cached.is_file()
    if from_cache:
        profile = profile_from_dict(orjson.loads(cached.read_bytes()))
    elif data.columns is not None:
        try:
            profile = build_profile(data.columns, data.categorical)
        except ProfileError as exc:
            return SkewSetup(None, None, f"cannot profile the training data: {exc}")
        _keep(cached, profile)
    if profile is None:
        return SkewSetup(None, None, data.reason)
    inputs = SkewTracker(profile, window_seconds=settings.window_seconds, sub_windows=settings.sub_windows)
    predictions = None
    baseline = _prediction_profile(servable, data, derived / f"profiles/{data.key}.predictions.json")
    if baseline is not None:
        predictions = SkewTracker(baseline, window_seconds=settings.window_seconds, sub_windows=settings.sub_windows)
    return SkewSetup(inputs, predictions, None, profile_cached=from_cache)


def _prediction_profile(servable: ServableModel, data: TrainingData, cached: Path) -> BaselineProfile | None:
    """The model's own predictions on the training sample, profiled. Kept with the version (the
    predictions are this model's, so never shared), so a restart neither predicts again nor
    needs the native model loaded before it serves its checked graph."""
    if data.sample is None:
        return None
    if cached.is_file():
        try:
            return profile_from_dict(orjson.loads(cached.read_bytes()))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # damaged: build it again
    try:
        values = prediction_values(servable.model.predict(data.sample))
    except Exception:  # a prediction baseline is a bonus; input skew still works
        return None
    if values is None or not np.isfinite(values).any():
        return None
    profile = build_profile({"prediction": values})
    _keep(cached, profile)
    return profile


def _keep(path: Path, profile: BaselineProfile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(profile_to_dict(profile)))
    tmp.replace(path)
