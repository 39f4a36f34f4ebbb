"""lockgate's tree engine in process: bit-identical to each library's own predict on rows at every
split threshold (and with missing values); an engine that compares in the wrong precision, with
the wrong operator or from the wrong base margin is refused by the deploy check, and only the
threshold rows catch the precision; rows beyond float32 get the model's own answer or error.
Also: safe load and the missing-library error for the two flavors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightgbm
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor

from lockgate.loader.dependency_check import _as_installed
from lockgate.loader.load_policy import code_run_by_flavor
from lockgate.loader.model_metadata import parse_mlmodel
from lockgate.loader.trees.choice import ENGINE, NATIVE, check_rows_for, choose
from lockgate.loader.trees.models import TreeModel, describe
from lockgate.loader.trees.threshold_rows import threshold_rows

ROOT = Path(__file__).resolve().parents[1]
X, Y = make_classification(n_samples=600, n_features=8, n_informative=5, n_classes=2, random_state=0)
X3, Y3 = make_classification(n_samples=600, n_features=8, n_informative=5, n_classes=3, random_state=1)
XR, YR = make_regression(n_samples=600, n_features=8, noise=3.0, random_state=2)


def _native(model: Any) -> Any:
    """The library's own answer, as MLflow's pyfunc computes it (a DataFrame; a DMatrix for a booster)."""
    if isinstance(model, xgboost.Booster):
        return lambda m: model.predict(xgboost.DMatrix(pd.DataFrame(m)))
    if isinstance(model, lightgbm.Booster):
        return lambda m: model.predict(pd.DataFrame(m))
    return model.predict


def _sklearn_native(model: Any) -> Any:
    return lambda m: np.asarray(model.predict(np.asfortranarray(m)))


CASES: dict[str, tuple[Any, np.ndarray]] = {
    "xgb-binary": (xgboost.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1).fit(X, Y), X),
    "xgb-3-class": (xgboost.XGBClassifier(n_estimators=20, max_depth=4, n_jobs=1).fit(X3, Y3), X3),
    "xgb-regressor": (xgboost.XGBRegressor(n_estimators=40, max_depth=5, n_jobs=1).fit(XR, YR), XR),
    "xgb-booster-softprob": (
        xgboost.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1}, xgboost.DMatrix(X3, Y3), 15),
        X3,
    ),
    "lgb-binary": (lightgbm.LGBMClassifier(n_estimators=40, verbose=-1, n_jobs=1).fit(X, Y), X),
    "lgb-3-class": (
        lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1).fit(X3, np.array(["a", "b", "c"])[Y3]),
        X3,
    ),
    "lgb-regressor": (lightgbm.LGBMRegressor(n_estimators=40, verbose=-1, n_jobs=1).fit(XR, YR), XR),
    "lgb-booster": (lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(X, Y), 30), X),
    "random-forest": (RandomForestRegressor(20, random_state=0).fit(XR, YR), XR),
    "extra-trees": (ExtraTreesRegressor(20, random_state=0).fit(XR, YR), XR),
    "gradient-boosting": (GradientBoostingRegressor(n_estimators=60, random_state=0).fit(XR, YR), XR),
    "decision-tree": (DecisionTreeRegressor(random_state=0).fit(XR, YR), XR),
}


def tree_model(model: Any) -> TreeModel:
    return describe(model, _sklearn_native(model) if type(model).__module__.startswith("sklearn") else None)


@pytest.mark.parametrize("name", list(CASES))
def test_the_engine_is_bit_identical_at_every_threshold(name: str) -> None:
    model, data = CASES[name]
    described = tree_model(model)
    predict, verdict = choose(described, _native(model), data[:50])
    assert predict is not None and verdict.engine == ENGINE and verdict.exact == [ENGINE, NATIVE], verdict
    assert verdict.threshold_rows > 100 and verdict.refused == {}, verdict
    # Fresh rows the check did not see: other training rows, and thresholds around another base row.
    assert described.engine is not None
    fresh = np.concatenate([data[50:], threshold_rows(described.engine.table, data[-1])])
    expected, got = np.asarray(_native(model)(fresh)), np.asarray(predict(fresh))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tolist() == expected.tolist() if expected.dtype == object else got.tobytes() == expected.tobytes()
    one = np.asarray(predict(fresh[-1:]))  # one row: the engine, whatever serves large batches
    assert one.tolist() == np.asarray(_native(model)(fresh[-1:])).tolist()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_missing_values_take_the_models_default_direction(library: str) -> None:
    rng = np.random.default_rng(3)
    data = X.copy()
    data[rng.random(data.shape) < 0.15] = np.nan
    model = (
        xgboost.XGBRegressor(n_estimators=30, max_depth=4, n_jobs=1)
        if library == "xgboost"
        else lightgbm.LGBMRegressor(n_estimators=30, verbose=-1, n_jobs=1)
    ).fit(data, Y.astype(float) + np.nan_to_num(data[:, 0]).clip(-1, 1))
    predict, verdict = choose(tree_model(model), _native(model), data[:100])
    assert predict is not None and verdict.engine == ENGINE, verdict
    assert np.isnan(data[100:]).any()
    assert np.asarray(predict(data[100:])).tobytes() == np.asarray(model.predict(data[100:])).tobytes()


def test_a_float32_engine_is_refused_for_lightgbm_and_only_threshold_rows_catch_it() -> None:
    """What a float32 converter does to a LightGBM model: its thresholds rounded to float32. On
    the training rows it agrees; on the rows at the thresholds it does not, so it never serves."""
    model, data = CASES["lgb-regressor"]
    honest = tree_model(model)
    assert honest.engine is not None
    table = honest.engine.table
    rounded = dataclasses.replace(table, threshold=table.threshold.astype(np.float32).astype(np.float64))
    float32_engine = dataclasses.replace(honest, engine=dataclasses.replace(honest.engine, table=rounded))
    training_only = float32_engine.engine.kernel().predict(data)  # type: ignore[union-attr]
    assert training_only.tobytes() == model.predict(data).tobytes(), "the training rows alone do not catch it"
    predict, verdict = choose(float32_engine, _native(model), data[:50])
    assert verdict.engine == NATIVE and predict is not None, verdict
    assert "differ from the model's own answer" in verdict.refused[ENGINE], verdict.refused
    checked, around = check_rows_for(float32_engine, data[:50], frozenset())
    assert around > 0 and len(checked) == 50 + around


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("lgb-regressor", lambda e: dataclasses.replace(e, table=dataclasses.replace(e.table, strict=True))),
        ("xgb-regressor", lambda e: dataclasses.replace(e, table=dataclasses.replace(e.table, strict=False))),
        ("random-forest", lambda e: dataclasses.replace(e, average=False)),
    ],
    ids=["lightgbm-with-<", "xgboost-with-<=", "forest-not-averaged"],
)
def test_a_wrong_engine_is_refused_and_the_native_path_serves(name: str, mutate: Any) -> None:
    model, data = CASES[name]
    honest = tree_model(model)
    assert honest.engine is not None
    broken = dataclasses.replace(honest, engine=mutate(honest.engine))
    predict, verdict = choose(broken, _native(model), data[:50])
    assert verdict.engine == NATIVE and ENGINE in verdict.refused, verdict
    assert predict is not None
    assert np.asarray(predict(data)).tobytes() == np.asarray(model.predict(data)).tobytes()


def test_a_wrong_base_margin_is_refused() -> None:
    model, data = CASES["xgb-regressor"]
    honest = tree_model(model)
    shifted = tuple(
        np.nextafter(c, np.float32(np.inf)).astype(np.float32) + np.float32(0.5) for c in honest.start_candidates
    )
    _predict, verdict = choose(dataclasses.replace(honest, start_candidates=shifted), _native(model), data[:50])
    assert verdict.engine == NATIVE and ENGINE in verdict.refused, verdict


def test_rows_beyond_float32_get_the_models_own_answer_or_error() -> None:
    model, data = CASES["gradient-boosting"]
    predict, verdict = choose(tree_model(model), _native(model), data[:50])
    assert predict is not None and verdict.engine == ENGINE
    rows = data[:3].copy()
    rows[1, 2] = 1e39
    with pytest.raises(ValueError, match=r"too large|infinity"):
        model.predict(rows)
    with pytest.raises(ValueError, match=r"too large|infinity"):
        predict(rows)
    assert np.asarray(predict(data[:3])).tobytes() == model.predict(data[:3]).tobytes()


def test_the_engine_can_be_turned_off() -> None:
    model, data = CASES["lgb-binary"]
    _predict, verdict = choose(tree_model(model), _native(model), data[:50], use_engine=False)
    assert verdict.engine == NATIVE and "turned off" in verdict.refused[ENGINE]


def _mlmodel(flavor: str, conf: dict[str, Any]) -> Any:
    import yaml

    document = {"flavors": {flavor: conf, "python_function": {"loader_module": f"mlflow.{flavor}"}}}
    return parse_mlmodel(yaml.safe_dump(document).encode(), "MLmodel")


def test_safe_load_accepts_model_files_and_refuses_pickles() -> None:
    assert (
        code_run_by_flavor(_mlmodel("xgboost", {"model_class": "xgboost.sklearn.XGBClassifier", "data": "model.ubj"}))
        == {}
    )
    assert (
        code_run_by_flavor(_mlmodel("lightgbm", {"model_class": "lightgbm.basic.Booster", "data": "model.lgb"})) == {}
    )
    wrapper = code_run_by_flavor(
        _mlmodel("lightgbm", {"model_class": "lightgbm.sklearn.LGBMClassifier", "data": "model.pkl"})
    )
    assert "unpickled" in wrapper["lightgbm"] and "lightgbm loader" in wrapper["python_function"], wrapper
    foreign = code_run_by_flavor(_mlmodel("xgboost", {"model_class": "os.system", "data": "model.ubj"}))
    assert "os.system" in foreign["xgboost"], foreign


def test_a_missing_library_is_one_clear_error_naming_the_extra(tmp_path: Path) -> None:
    model, _ = CASES["xgb-binary"]
    mlflow.xgboost.save_model(model, str(tmp_path / "m"))
    # xgboost cannot be uninstalled from the environment this suite runs in: the child process
    # hides it (``sys.modules[name] = None`` is how Python marks a module as absent).
    script = (
        "import sys; sys.modules['xgboost'] = None\n"
        "from pathlib import Path\n"
        "from lockgate.loader.flavors import load_model\n"
        "from lockgate.loader.errors import MissingFlavorLibraryError\n"
        f"try:\n    load_model(Path({str(tmp_path / 'm')!r}))\n"
        "except MissingFlavorLibraryError as exc:\n    print('REFUSED', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "pip install 'lockgate[xgboost]'" in result.stdout


def test_the_cpu_build_of_xgboost_meets_an_xgboost_requirement() -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("xgboost")
        pytest.skip("the full xgboost distribution is installed here; the rewrite applies to xgboost-cpu")
    except PackageNotFoundError:
        pass
    assert _as_installed("xgboost==3.2.0") == "xgboost-cpu==3.2.0"
    assert _as_installed("lightgbm==4.7.0") == "lightgbm==4.7.0"


def test_a_restart_reuses_mlflows_answers_only_for_the_same_rows(tmp_path: Path) -> None:
    """The reference (MLflow's answers on the check rows) is the expensive part of the check:
    kept with the version, reused for the very same rows, never for others, and the candidates
    are still run and compared every time."""
    model, data = CASES["lgb-regressor"]
    calls: list[int] = []

    def reference(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return np.asarray(model.predict(rows))

    first, verdict = choose(tree_model(model), reference, data[:50], reference_cache=tmp_path)
    assert first is not None and len(calls) == 1 and any(tmp_path.glob("reference-*.json"))
    again, verdict_again = choose(tree_model(model), reference, data[:50], reference_cache=tmp_path)
    assert again is not None and len(calls) == 1, "the same rows: MLflow's answers were reused"
    assert verdict_again.engine == verdict.engine and verdict_again.rows_checked == verdict.rows_checked
    choose(tree_model(model), reference, data[:51], reference_cache=tmp_path)
    assert len(calls) == 2, "other rows: asked again"
    # A reused answer that no longer matches the engine still refuses it (the comparison runs).
    for file in tmp_path.glob("reference-*.json"):
        record = json.loads(file.read_text())
        record["values"][0] += 1.0
        file.write_text(json.dumps(record))
    _, tampered = choose(tree_model(model), reference, data[:50], reference_cache=tmp_path)
    assert ENGINE in tampered.refused and NATIVE in tampered.refused
