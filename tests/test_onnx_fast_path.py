"""The ONNX fast path: conversion, the equivalence check, and the cached verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from lockgate.loader.onnx.fast_path import _try_precision, build_onnx_predictor, has_cached_conversion


def test_classifier_converts_and_predicts_the_same_labels(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    rows = iris.data.to_numpy(np.float64)
    predictor, verdict = build_onnx_predictor(model, list(iris.data.columns), rows, tmp_path / "iris")
    assert predictor is not None, verdict.reason
    assert verdict.ok and verdict.rows_checked == 150
    assert verdict.max_probability_difference is not None and verdict.max_probability_difference <= 1e-5
    labels = predictor.predict(rows)
    assert labels.dtype == model.predict(iris.data).dtype
    assert labels.tolist() == model.predict(iris.data).tolist()


def test_regressor_within_tolerance_and_shaped_like_sklearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((300, 5)), columns=list("abcde"))
    y = X.to_numpy() @ np.arange(1.0, 6.0) + rng.normal(0, 0.1, 300)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    predictor, verdict = build_onnx_predictor(model, list("abcde"), X.to_numpy(), tmp_path / "rf")
    assert predictor is not None, verdict.reason
    assert verdict.max_relative_difference is not None and verdict.max_relative_difference <= 1e-5
    out = predictor.predict(X.to_numpy()[:7])
    assert out.shape == (7,)
    assert np.allclose(out, model.predict(X.head(7)), rtol=1e-5)


def test_a_conversion_that_loses_precision_is_refused_with_the_numbers(tmp_path: Path) -> None:
    """y = 1e8*a - 1e8*b + c: float32 cancels catastrophically, so its check must fail; the
    float64 graph, tried first, serves it within the float64 contract."""
    rng = np.random.default_rng(1)
    X = rng.random((200, 3))
    model = LinearRegression().fit(X, 1e8 * X[:, 0] - 1e8 * X[:, 1] + X[:, 2])
    predictor, verdict = _try_precision(
        model, ["a", "b", "c"], X, tmp_path / "f32", "float32", model_dir=None, spinning=False
    )
    assert predictor is None
    assert not verdict.ok
    assert verdict.reason is not None and "max relative difference" in verdict.reason
    assert verdict.max_relative_difference is not None and verdict.max_relative_difference > 1e-5
    predictor, verdict = build_onnx_predictor(model, ["a", "b", "c"], X, tmp_path / "both")
    assert predictor is not None and verdict.precision == "float64", verdict.reason
    assert verdict.max_relative_difference is not None and verdict.max_relative_difference <= 1e-12
    assert np.allclose(predictor.predict(X), model.predict(X), rtol=1e-12, atol=0)


def test_classifiers_never_get_a_float32_graph_and_exact_means_bit_identical(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    rows = iris.data.to_numpy(np.float64)
    predictor, verdict = build_onnx_predictor(model, list(iris.data.columns), rows, tmp_path / "c", exact=True)
    assert predictor is not None and predictor.precision == "float64" and verdict.exact is True
    assert verdict.contract == "exact"


def test_a_float32_graph_hands_unrepresentable_rows_to_the_native_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((300, 3))
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X.sum(axis=1))
    seen: list[np.ndarray] = []

    def native(matrix: np.ndarray) -> np.ndarray:
        seen.append(matrix)
        return np.full(len(matrix), -1.0)

    predictor, verdict = build_onnx_predictor(model, ["a", "b", "c"], X, tmp_path / "f32", native=native)
    assert predictor is not None and verdict.contract == "float32~1e-05", verdict.reason
    rows = X[:4].copy()
    rows[1, 0], rows[3, 2] = 1e39, -3.5e38
    out = predictor.predict(rows)
    assert out[1] == out[3] == -1.0 and len(seen) == 1 and len(seen[0]) == 2
    assert np.allclose(out[[0, 2]], model.predict(X[[0, 2]]), rtol=1e-5)


class Unconvertible(BaseEstimator, RegressorMixin):  # type: ignore[misc]
    def fit(self, X: np.ndarray, y: np.ndarray) -> Unconvertible:
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean_)


def test_an_unknown_estimator_is_refused_once_and_the_verdict_is_cached(tmp_path: Path) -> None:
    X = np.ones((4, 2))
    model = Unconvertible().fit(X, np.arange(4.0))
    assert not has_cached_conversion(tmp_path / "custom")
    predictor, verdict = build_onnx_predictor(model, ["a", "b"], X, tmp_path / "custom")
    assert predictor is None and verdict.reason is not None and "cannot convert Unconvertible" in verdict.reason
    assert has_cached_conversion(tmp_path / "custom")
    _, again = build_onnx_predictor(model, ["a", "b"], X, tmp_path / "custom")
    assert again.from_cache and again.reason == verdict.reason


def test_a_cached_graph_is_reused_and_rechecked(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    rows = iris.data.to_numpy(np.float64)
    first, verdict = build_onnx_predictor(model, list(iris.data.columns), rows, tmp_path / "k")
    assert first is not None and not verdict.from_cache and verdict.convert_seconds > 0
    second, cached = build_onnx_predictor(model, list(iris.data.columns), rows, tmp_path / "k")
    assert second is not None and cached.from_cache and cached.convert_seconds == 0
    # A graph from another model under this key (a damaged cache) fails the re-check.
    other = LogisticRegression(max_iter=500).fit(iris.data, (iris.target + 1) % 3)
    third, damaged = build_onnx_predictor(other, list(iris.data.columns), rows, tmp_path / "k")
    assert third is None and damaged.reason is not None and "labels differ" in damaged.reason


def test_no_rows_to_check_means_no_fast_path(tmp_path: Path) -> None:
    model = LinearRegression().fit(np.ones((3, 2)), np.arange(3.0))
    predictor, verdict = build_onnx_predictor(model, ["a", "b"], np.empty((0, 2)), tmp_path / "empty")
    assert predictor is None and verdict.reason is not None and "no rows" in verdict.reason


def test_conversion_in_a_child_process_from_the_model_directory(tmp_path: Path) -> None:
    import mlflow.sklearn

    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    model_dir = tmp_path / "model"
    mlflow.sklearn.save_model(model, str(model_dir), serialization_format="cloudpickle")
    rows = iris.data.to_numpy(np.float64)
    (tmp_path / "cache").mkdir()  # a version's derived directory: graphs go in a folder inside it
    predictor, verdict = build_onnx_predictor(
        model, list(iris.data.columns), rows, tmp_path / "cache" / "child", model_dir=model_dir
    )
    assert predictor is not None, verdict.reason
    assert predictor.predict(rows).tolist() == model.predict(iris.data).tolist()


def test_a_failing_child_conversion_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    model = LinearRegression().fit(np.ones((3, 2)), np.arange(3.0))
    (tmp_path / "cache").mkdir()
    predictor, verdict = build_onnx_predictor(
        model, ["a", "b"], np.ones((3, 2)), tmp_path / "cache" / "broken", model_dir=tmp_path / "no-such-model"
    )
    assert predictor is None
    assert verdict.reason is not None and "conversion process exited" in verdict.reason
