"""Reading an endpoint's training data for the skew baseline: CSV and Parquet, matched to the
signature, and a reason (not an error) when it cannot be used."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from lockgate.loader.baseline import training_data
from lockgate.loader.resolved import ResolvedModel, WeightsLocation
from lockgate.store import Store

SIGNATURE = {
    "inputs": '[{"type": "double", "name": "x", "required": true}, '
    '{"type": "string", "name": "city", "required": true}]'
}


def _resolved(dataset_uri: str | None, signature: dict[str, str] | None = SIGNATURE) -> ResolvedModel:
    return ResolvedModel(
        uri="models:/m/1", reference="version", moves=False, name="m", version="1", run_id=None,
        weights=WeightsLocation(commit="0" * 64, path="m", repo="models"),
        dataset_commits=("x",) if dataset_uri else (), dataset_uris=(dataset_uri,) if dataset_uri else (),
        signature=signature,
    )  # fmt: skip


def test_parquet_and_csv_give_the_same_columns(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"), create=True)
    frame = pd.DataFrame({"x": np.arange(10, dtype=float), "city": ["a", "b"] * 5, "ignored": 1})
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    commit = store.commit_files(
        "datasets",
        "main",
        [("p/train.parquet", parquet.getvalue()), ("c/train.csv", frame.to_csv(index=False).encode())],
    ).commit_id
    for path in ("p", "c"):
        data = training_data(lambda: store, _resolved(f"lockgate://datasets@{commit}/{path}"))
        assert data.reason is None and data.columns is not None
        assert sorted(data.columns) == ["city", "x"], "columns are matched to the signature"
        np.testing.assert_array_equal(data.columns["x"], frame["x"].to_numpy())
        assert data.categorical == frozenset({"city"})
        assert data.sample is not None and len(data.sample) == 10


def test_reasons_instead_of_errors(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"), create=True)
    commit = store.commit_files("datasets", "main", [("other.csv", b"a,b\n1,2\n")]).commit_id
    assert "no dataset lineage" in str(training_data(lambda: store, _resolved(None)).reason)
    assert "no signature" in str(
        training_data(lambda: store, _resolved(f"lockgate://datasets@{commit}/other.csv", None)).reason
    )
    none_match = training_data(lambda: store, _resolved(f"lockgate://datasets@{commit}/other.csv"))
    assert "none of the signature's columns" in str(none_match.reason)
    missing = training_data(lambda: store, _resolved(f"lockgate://datasets@{commit}/nope.csv"))
    assert "cannot read the training data" in str(missing.reason)
