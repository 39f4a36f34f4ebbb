"""XGBoost models (a ``Booster``, ``XGBClassifier`` or ``XGBRegressor``) in lockgate's tree engine.

XGBoost casts features to float32 and sends ``x < threshold`` left (a missing value takes the
node's default direction). It adds the leaves in float32, tree by tree, onto the base margin,
then applies the objective's transform in float32: ``1 / (expf(min(-x, 88.7)) + 1)`` for
``binary:logistic``, a softmax with a double sum for ``multi:softprob``. ``expf`` is called from
the C library itself (numpy's float32 ``exp`` rounds differently in about 40 % of cases).

The trees are read from the model's own JSON (``Booster.save_raw("json")``): thresholds and
leaves are float32 values printed to round-trip. The base margin is not printed in margin space,
so the candidates (XGBoost's float32 formula, and the same in float64 rounded) are tried against
XGBoost's own margins on the check rows; the deploy check then proves the whole answer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np

from lockgate.loader.trees.ensemble import EnsembleEngine
from lockgate.loader.trees.table import EngineUnavailable, TableBuilder

_TRANSFORMED = ("binary:logistic", "multi:softprob", "multi:softmax")
_IDENTITY = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror", "binary:logitraw")


@cache
def _expf() -> Callable[[float], float]:
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    function = libm.expf
    function.restype, function.argtypes = ctypes.c_float, [ctypes.c_float]
    return function


def expf(values: np.ndarray) -> np.ndarray:
    """The C library's ``expf`` of each float32 value (XGBoost's own)."""
    function = _expf()
    return np.array([function(v) for v in values.ravel().tolist()], dtype=np.float32).reshape(values.shape)


def sigmoid(margins: np.ndarray) -> np.ndarray:
    one = np.float32(1.0)
    exponent = np.minimum(-margins.astype(np.float32), np.float32(88.7))
    return one / (expf(exponent) + one)


def softmax(margins: np.ndarray) -> np.ndarray:
    margins = margins.astype(np.float32)
    top = margins.max(axis=1, keepdims=True)
    exps = expf(margins - top)
    total = np.add.accumulate(exps.astype(np.float64), axis=1)[:, -1:]  # a double, added in order
    return exps / total.astype(np.float32)


def _model_json(booster: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(bytes(booster.save_raw("json")))
    return document


def _base_score(learner: dict[str, Any]) -> np.ndarray:
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    return np.array([float(part) for part in raw.split(",")], dtype=np.float32)


def base_margin_candidates(objective: str, base_score: np.ndarray) -> list[np.ndarray]:
    """Where the margin sum may start, most likely first (XGBoost's ``ProbToMargin``)."""
    if objective == "binary:logistic":
        one = np.float32(1.0)
        in_float32 = -np.log(one / base_score - one)
        in_float64 = (-np.log(1.0 / base_score.astype(np.float64) - 1.0)).astype(np.float32)
        return [in_float32.astype(np.float32), in_float64]
    return [base_score]


def _add_tree(builder: TableBuilder, tree: dict[str, Any]) -> None:
    base = builder.start_tree()
    left, right = tree["left_children"], tree["right_children"]
    conditions, features, default_left = tree["split_conditions"], tree["split_indices"], tree["default_left"]
    if any(int(kind) != 0 for kind in tree.get("split_type", [])):
        raise EngineUnavailable("the model has categorical splits; the tree engine serves numerical splits")
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise EngineUnavailable("the model has vector leaves (multi-target trees)")
    depth = {0: 0}
    for node in range(len(left)):
        if left[node] == -1:
            builder.add_leaf(float(np.float32(conditions[node])))
        else:
            builder.add_split(
                int(features[node]), float(np.float32(conditions[node])),
                base + int(left[node]), base + int(right[node]), bool(default_left[node]),
            )  # fmt: skip
            depth[int(left[node])] = depth[int(right[node])] = depth[node] + 1
        builder.note_depth(depth[node])


def _trees_in_range(model: dict[str, Any], rounds: int | None) -> list[dict[str, Any]]:
    trees: list[dict[str, Any]] = model["trees"]
    if rounds is None:
        return trees
    indptr = model.get("iteration_indptr") or []
    return trees[: int(indptr[rounds])] if len(indptr) > rounds else trees


def build(
    raw_model: Any, *, booster: Any, rounds: int | None, finish_labels: bool
) -> tuple[EnsembleEngine, list[np.ndarray]]:
    """The engine (its base margin the first candidate) and every base-margin candidate.
    ``rounds``: the boosting rounds the sklearn wrapper predicts with (its ``best_iteration``
    + 1), None for all. ``finish_labels``: answer as ``XGBClassifier.predict`` does."""
    document = _model_json(booster)
    learner = document["learner"]
    objective = str(learner["objective"]["name"])
    if objective not in _TRANSFORMED + _IDENTITY:
        raise EngineUnavailable(f"objective {objective} is not one the tree engine reproduces")
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise EngineUnavailable(f"booster {booster_kind}: the tree engine serves gbtree models")
    model = learner["gradient_booster"]["model"]
    if int(model["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
        raise EngineUnavailable("the model grows parallel trees per round (a random forest)")
    trees = _trees_in_range(model, rounds)
    classes = int(learner["learner_model_param"].get("num_class", "0"))
    groups = max(classes, 1)
    if [int(g) for g in model["tree_info"][: len(trees)]] != [i % groups for i in range(len(trees))]:
        raise EngineUnavailable("the trees do not take the classes in turn")
    builder = TableBuilder()
    for tree in trees:
        _add_tree(builder, tree)
    table = builder.build(threshold_dtype=np.float32, leaf_dtype=np.float32, feature_dtype=np.float32, strict=True)
    candidates = [
        np.broadcast_to(c, (groups,)).astype(np.float32)
        for c in base_margin_candidates(objective, _base_score(learner))
    ]
    finish = XGBoostFinish(objective, groups, finish_labels)
    return EnsembleEngine(table, groups, candidates[0], finish, "xgboost"), candidates


@dataclass(frozen=True)
class XGBoostFinish:
    """XGBoost's last step on the margins, as its predict (or ``XGBClassifier.predict``) takes it.
    Data only, so a restart can rebuild it from the engine's record without the model."""

    objective: str
    groups: int
    labels: bool

    def spec(self) -> dict[str, Any]:
        return {"library": "xgboost", **asdict(self)}

    def __call__(self, margins: np.ndarray) -> np.ndarray:
        objective, labels = self.objective, self.labels
        if objective == "binary:logistic":
            probabilities = sigmoid(margins[:, 0])
            if not labels:
                return probabilities
            indexes = np.repeat(0, len(probabilities))
            indexes[probabilities > 0.5] = 1
            return indexes
        if objective in ("multi:softprob", "multi:softmax"):
            probabilities = softmax(margins)
            if objective == "multi:softmax":
                winner = np.argmax(margins, axis=1).astype(np.float32)
                return np.asarray(winner.astype(np.int32)) if labels else np.asarray(winner)
            return np.asarray(np.argmax(probabilities, axis=1)) if labels else np.asarray(probabilities)
        values = margins[:, 0] if self.groups == 1 else margins
        if labels:  # binary:logitraw through XGBClassifier: a margin above 0.5 is class 1
            indexes = np.repeat(0, len(values))
            indexes[values > 0.5] = 1
            return indexes
        return values
