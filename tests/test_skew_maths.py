"""Skew detection on the diabetes demo data: no false alarms on training-like traffic, a clear
signal on a shifted feature, and unseen categories counted."""

from __future__ import annotations

import json

import numpy as np
from sklearn.datasets import load_diabetes

from lockgate.monitoring.divergence import js_distance, psi
from lockgate.monitoring.profile import build_profile
from lockgate.monitoring.skew import SkewTracker


def _diabetes() -> dict[str, np.ndarray]:
    frame = load_diabetes(as_frame=True).data
    return {c: frame[c].to_numpy() for c in frame.columns}


def _sample(columns: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(next(iter(columns.values()))), n)
    return {c: v[rows] for c, v in columns.items()}


def test_training_like_traffic_has_low_psi_everywhere() -> None:
    train = _diabetes()
    tracker = SkewTracker(build_profile(train))
    live = _sample(train, 5000, seed=1)
    for start in range(0, 5000, 100):  # as 50 requests of 100 rows
        tracker.observe({c: v[start : start + 100] for c, v in live.items()})
    report = tracker.report()
    assert report.rows == 5000
    print("\nPSI on 5,000 sampled training rows:", {f.feature: round(f.psi, 4) for f in report.features})
    assert all(f.psi < 0.05 for f in report.features), report.features
    assert all(f.out_of_range_ratio == 0 and f.missing_ratio == 0 for f in report.features)


def test_one_shifted_feature_stands_out() -> None:
    train = _diabetes()
    tracker = SkewTracker(build_profile(train))
    live = _sample(train, 5000, seed=2)
    live["bmi"] = live["bmi"] + train["bmi"].std()
    tracker.observe(live)
    report = tracker.report()
    print("\nPSI with bmi shifted by 1 sd:", {f.feature: round(f.psi, 4) for f in report.features})
    assert report.feature("bmi").psi > 0.25
    assert all(f.psi < 0.1 for f in report.features if f.feature != "bmi")
    assert report.max_psi == report.feature("bmi").psi
    assert report.feature("bmi").out_of_range_ratio > 0


def test_unseen_categories_and_missing_values() -> None:
    rng = np.random.default_rng(3)
    train = {"city": rng.choice(["paris", "lyon", "nice"], 2000).astype(object), "x": rng.normal(size=2000)}
    tracker = SkewTracker(build_profile(train))
    tracker.observe(
        {
            "city": np.array(["paris", "berlin", "rome", None, "lyon"], dtype=object),
            "x": np.array([0.0, np.nan, 1.0, 2.0, 0.5]),
        }
    )
    report = tracker.report()
    city = report.feature("city")
    assert city.unseen_category_ratio == 2 / 5
    assert city.missing_ratio == 1 / 5
    assert report.feature("x").missing_ratio == 1 / 5


def test_window_forgets_old_traffic() -> None:
    now = [0.0]
    train = {"x": np.random.default_rng(4).normal(size=1000)}
    tracker = SkewTracker(build_profile(train), window_seconds=60, sub_windows=6, clock=lambda: now[0])
    tracker.observe({"x": np.full(100, 50.0)})
    assert tracker.report().rows == 100
    now[0] = 30.0
    tracker.observe({"x": np.zeros(10)})
    assert tracker.report().rows == 110
    now[0] = 65.0  # the first sub-window has left the 60 s window
    assert tracker.report().rows == 10


def test_divergences_are_zero_for_identical_distributions() -> None:
    base = np.array([0.25, 0.25, 0.5])
    assert psi(base, base * 400) < 1e-12
    assert js_distance(base, base * 400) < 1e-7
    assert 0.99 < js_distance(np.array([1.0, 0.0]), np.array([0.0, 10.0])) <= 1.0


def test_values_rounded_by_json_stay_in_their_bins() -> None:
    train = _diabetes()
    tracker = SkewTracker(build_profile(train))
    live = _sample(train, 5000, seed=5)
    tracker.observe({c: np.round(v, 10) for c, v in live.items()})  # what pandas' to_json sends
    report = tracker.report()
    assert all(f.psi < 0.05 for f in report.features), {f.feature: f.psi for f in report.features}


def test_profile_round_trips_through_json() -> None:
    from lockgate.monitoring.profile import profile_from_dict, profile_to_dict

    rng = np.random.default_rng(6)
    profile = build_profile({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500).astype(object)})
    again = profile_from_dict(json.loads(json.dumps(profile_to_dict(profile))))
    sample = {"x": rng.normal(size=50), "c": rng.choice(["a", "b", "z"], 50).astype(object)}
    one, two = SkewTracker(profile), SkewTracker(again)
    one.observe(sample)
    two.observe(sample)
    assert one.report() == two.report()


def test_vectorised_binning_matches_per_feature_binning() -> None:
    """Both request-path binning strategies (broadcast for few rows, binary search for many)
    agree with the profile's own per-feature rule, including NaN, +-inf and edge values."""
    rng = np.random.default_rng(7)
    train = {f"f{i}": rng.normal(size=2000) for i in range(6)}
    train["discrete"] = rng.integers(0, 3, 2000).astype(float)
    profile = build_profile(train)
    tracker = SkewTracker(profile)
    for rows in (5, 500):
        matrix = rng.normal(scale=2, size=(rows, len(tracker.numeric_names)))
        matrix[0, 0], matrix[1, 1], matrix[2, 2] = np.nan, np.inf, -np.inf
        edges = profile.features["f3"].edges  # type: ignore[union-attr]
        matrix[3, 3], matrix[4, 3] = edges[-1], edges[4] - 1e-11
        flat = tracker.numeric_bins(matrix)
        for j, name in enumerate(tracker.numeric_names):
            feature = profile.features[name]
            expected = feature.bin_of(matrix[:, j]) + tracker._offsets[j]  # type: ignore[union-attr]
            np.testing.assert_array_equal(flat[:, j], expected, err_msg=f"{name}, {rows} rows")
