"""scikit-learn tree regressors in lockgate's tree engine: a decision tree, a random forest or
extra-trees forest (the average of its trees), and gradient boosting (a constant plus the
learning rate times each tree).

scikit-learn casts the features to float32 and compares them with float64 thresholds,
``x <= threshold``; a forest adds its trees' float64 answers one by one into zeros and divides
by their number; gradient boosting adds ``learning_rate * leaf`` one tree at a time to its
initial constant (``_gradient_boosting.pyx``, ``predict_stages``). The engine does the same
arithmetic in the same order (onnxruntime divides a forest's sum by its number of trees too),
which is what makes it exact; the deploy check proves it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lockgate.loader.trees.ensemble import EnsembleEngine, identity
from lockgate.loader.trees.table import EngineUnavailable, TableBuilder

_FORESTS = ("RandomForestRegressor", "ExtraTreesRegressor")
_REGRESSORS = ("DecisionTreeRegressor", "ExtraTreeRegressor", "GradientBoostingRegressor", *_FORESTS)


def _add_tree(builder: TableBuilder, tree: Any, scale: float | None) -> None:
    """One fitted ``sklearn.tree._tree.Tree``; leaf values multiplied by ``scale`` (in float64,
    as scikit-learn multiplies them) when it is given."""
    base = builder.start_tree()
    left, right = tree.children_left, tree.children_right
    missing_left = getattr(tree, "missing_go_to_left", None)
    values = tree.value[:, 0, 0]
    depth = {0: 0}
    for node in range(tree.node_count):
        if left[node] == -1:
            value = float(values[node])
            builder.add_leaf(float(np.float64(scale) * np.float64(value)) if scale is not None else value)
        else:
            nan_left = bool(missing_left[node]) if missing_left is not None else False
            builder.add_split(
                int(tree.feature[node]), float(tree.threshold[node]),
                base + int(left[node]), base + int(right[node]), nan_left,
            )  # fmt: skip
            depth[int(left[node])] = depth[int(right[node])] = depth[node] + 1
        builder.note_depth(depth[node])


def _regressor_trees(model: Any) -> tuple[list[Any], float | None]:
    kind = type(model).__name__
    if getattr(model, "n_outputs_", 1) != 1:
        raise EngineUnavailable(f"{kind} has {model.n_outputs_} outputs; the tree engine serves one")
    if kind in ("DecisionTreeRegressor", "ExtraTreeRegressor"):
        return [model.tree_], None
    if kind in _FORESTS:
        return [estimator.tree_ for estimator in model.estimators_], None
    if kind == "GradientBoostingRegressor":
        return [stage[0].tree_ for stage in model.estimators_], float(model.learning_rate)
    raise EngineUnavailable(f"{kind} is not a tree regressor the tree engine knows")


def _gradient_boosting_start(model: Any, features: int) -> float:
    init = model.init_
    if isinstance(init, str) and init == "zero":
        return 0.0
    if type(init).__name__ != "DummyRegressor":
        raise EngineUnavailable(
            f"gradient boosting starts from a {type(init).__name__}; the tree engine knows constants"
        )
    return float(np.asarray(init.predict(np.zeros((1, features)))).reshape(-1)[0])


def build(model: Any) -> EnsembleEngine:
    trees, scale = _regressor_trees(model)
    builder = TableBuilder()
    for tree in trees:
        _add_tree(builder, tree, scale)
    table = builder.build(threshold_dtype=np.float64, leaf_dtype=np.float64, feature_dtype=np.float32, strict=False)
    if type(model).__name__ in _FORESTS:
        return EnsembleEngine(table, 1, np.zeros(1), identity, "sklearn", average=True)
    start = _gradient_boosting_start(model, int(model.n_features_in_)) if scale is not None else 0.0
    return EnsembleEngine(table, 1, np.array([start]), identity, "sklearn")


def is_tree_regressor(model: Any) -> bool:
    return type(model).__name__ in (
        "DecisionTreeRegressor",
        "ExtraTreeRegressor",
        "GradientBoostingRegressor",
        *_FORESTS,
    )
