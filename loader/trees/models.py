"""Which tree model a version holds, how lockgate's engine is built from it, and the model's own
predict called the lean way (a matrix, no DataFrame, no ``DMatrix``): the exact path that serves
when the engine is refused, and large batches where it is faster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.loader.trees import from_lightgbm, from_sklearn, from_xgboost
from lockgate.loader.trees.ensemble import EnsembleEngine
from lockgate.loader.trees.table import EngineUnavailable

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TreeModel:
    library: str  # "xgboost", "lightgbm", "sklearn"
    kind: str  # the model's class name: XGBClassifier, Booster, RandomForestRegressor...
    raw: Any
    native: Predict  # the model's own predict on a float64 matrix, answering as MLflow's pyfunc does
    # XGBoost only: the base margins to try (its base score is not stored in margin space).
    start_candidates: tuple[np.ndarray, ...] = ()
    engine: EnsembleEngine | None = None
    refused: str | None = None  # why the engine cannot express this model

    @property
    def name(self) -> str:
        return f"{self.library} {self.kind}"


def _library(raw: Any) -> str | None:
    module = type(raw).__module__.split(".", 1)[0]
    return module if module in ("xgboost", "lightgbm", "sklearn") else None


def is_tree_model(raw: Any) -> bool:
    library = _library(raw)
    return library in ("xgboost", "lightgbm") or (library == "sklearn" and from_sklearn.is_tree_regressor(raw))


def describe(raw: Any, sklearn_native: Predict | None = None) -> TreeModel:
    """The tree model behind ``raw`` (an XGBoost or LightGBM model, or a scikit-learn tree
    regressor, whose lean native predict the caller passes as ``sklearn_native``)."""
    library = _library(raw)
    kind = type(raw).__name__
    if library == "xgboost":
        return _xgboost(raw, kind)
    if library == "lightgbm":
        return _lightgbm(raw, kind)
    if library == "sklearn" and sklearn_native is not None:
        try:
            return TreeModel("sklearn", kind, raw, sklearn_native, engine=from_sklearn.build(raw))
        except EngineUnavailable as exc:
            return TreeModel("sklearn", kind, raw, sklearn_native, refused=str(exc))
    raise EngineUnavailable(f"{kind} is not a tree model lockgate's tree engine knows")


def _xgboost(raw: Any, kind: str) -> TreeModel:
    import xgboost

    if isinstance(raw, xgboost.Booster):
        booster, rounds = raw, None

        def native(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(booster.inplace_predict(matrix, validate_features=False))
    else:
        booster = raw.get_booster()
        best = getattr(raw, "best_iteration", None) if hasattr(raw, "best_iteration") else None
        rounds = int(best) + 1 if best is not None else None

        def native(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(raw.predict(matrix, validate_features=False))

    classifier = isinstance(raw, xgboost.XGBClassifier)
    try:
        engine, candidates = from_xgboost.build(raw, booster=booster, rounds=rounds, finish_labels=classifier)
    except EngineUnavailable as exc:
        return TreeModel("xgboost", kind, raw, native, refused=str(exc))
    return TreeModel("xgboost", kind, raw, native, tuple(candidates), engine)


def _lightgbm(raw: Any, kind: str) -> TreeModel:
    import lightgbm

    booster = raw if isinstance(raw, lightgbm.Booster) else raw.booster_
    # LGBMClassifier.predict answers ``_le.inverse_transform(argmax)``, which is ``classes_[argmax]``
    # after input checks that cost more than the trees do for one row.
    classes = np.asarray(raw.classes_) if isinstance(raw, lightgbm.LGBMClassifier) else None

    def native(matrix: np.ndarray) -> np.ndarray:
        # LGBMClassifier.predict is the booster's probabilities and this labelling; the wrapper's
        # own input checks cost a millisecond a call and warn on a matrix without column names.
        answer = np.asarray(booster.predict(matrix))
        if classes is None:
            return answer
        probabilities = np.vstack((1.0 - answer, answer)).transpose() if answer.ndim == 1 else answer
        return np.asarray(classes[np.argmax(probabilities, axis=1)])

    try:
        engine = from_lightgbm.build(booster, classes=classes)
    except EngineUnavailable as exc:
        return TreeModel("lightgbm", kind, raw, native, refused=str(exc))
    return TreeModel("lightgbm", kind, raw, native, engine=engine)
