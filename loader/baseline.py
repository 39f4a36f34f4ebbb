"""The training data behind an endpoint, read for the serving-skew baseline.

The dataset is read through the store at its pinned commit (CSV or Parquet) and its columns
are matched to the model signature's inputs. Building the profile itself is monitoring's job
(the gateway composes the two). A model with no dataset lineage, or whose dataset lacks the
signature's columns, gets a reason instead of data; that is not an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blake3
import numpy as np
import orjson
import pandas as pd

from lockgate.loader.resolved import ResolvedModel
from lockgate.store import Store, StoreError, parse_uri

SAMPLE_ROWS = 1000
_TABULAR = (".csv", ".parquet", ".pq")
_CATEGORICAL_TYPES = ("string", "binary", "boolean")


@dataclass
class TrainingData:
    key: str  # names (dataset commit, path, feature set): the profile cache key
    columns: dict[str, np.ndarray] | None
    categorical: frozenset[str]
    sample: pd.DataFrame | None  # rows of the training data, for the prediction baseline
    reason: str | None  # why there is no data, when there is none


def signature_columns(signature: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(name, type) of each named input column of an MLflow signature, in order."""
    if not signature or not signature.get("inputs"):
        return []
    raw = signature["inputs"]
    specs = orjson.loads(raw) if isinstance(raw, str) else raw
    return [(str(s["name"]), str(s.get("type", ""))) for s in specs if isinstance(s, dict) and s.get("name")]


def _read_table(store: Store, commit: str, path: str) -> pd.DataFrame:
    files = store.list_files(commit, path)
    tables = [p for p in sorted(files) if p.lower().endswith(_TABULAR)]
    if not tables:
        raise ValueError(f"no CSV or Parquet file at {path!r} in dataset commit {commit[:12]}")
    frames = []
    for name in tables:
        data = io.BytesIO(store.read_file(commit, name))
        frames.append(pd.read_csv(data) if name.lower().endswith(".csv") else pd.read_parquet(data))
    return pd.concat(frames, ignore_index=True)


def training_data(open_store: Callable[[], Store], resolved: ResolvedModel) -> TrainingData:
    """The signature's columns of the endpoint's training data. ``key`` is empty when there is
    no lineage or no signature to match; otherwise it is set even if the data cannot be read."""
    columns = signature_columns(resolved.signature)
    if not resolved.dataset_uris:
        reason = "no dataset lineage: the run logged no lockgate:// dataset and has no lockgate.dataset tag"
        return TrainingData("", None, frozenset(), None, reason)
    if not columns:
        return TrainingData("", None, frozenset(), None, "the model has no signature with named input columns")
    target = parse_uri(resolved.dataset_uris[0])
    key = blake3.blake3(orjson.dumps([target.ref.name, target.path, columns])).hexdigest()[:32]
    categorical = frozenset(n for n, kind in columns if kind in _CATEGORICAL_TYPES)
    try:
        table = _read_table(open_store(), target.ref.name, target.path)
    except (StoreError, ValueError, OSError) as exc:
        return TrainingData(
            key, None, categorical, None, f"cannot read the training data {resolved.dataset_uris[0]}: {exc}"
        )
    present = [n for n, _ in columns if n in table.columns]
    if not present:
        names = ", ".join(n for n, _ in columns)
        return TrainingData(
            key, None, categorical, None, f"the training data has none of the signature's columns ({names})"
        )
    sample = table[present].sample(n=min(SAMPLE_ROWS, len(table)), random_state=0)
    return TrainingData(key, {n: table[n].to_numpy() for n in present}, categorical, sample, None)


@dataclass
class EvaluationData:
    """The rows a version's baseline score is taken on: the signature's columns and the target."""

    dataset: str  # "evaluation" (logged with an evaluation context) or "training" (optimistic)
    uri: str
    target: str
    inputs: pd.DataFrame
    labels: pd.Series


def evaluation_data(
    open_store: Callable[[], Store], resolved: ResolvedModel, target: str | None = None
) -> EvaluationData | str:
    """The rows to score the model on, or why there are none. The dataset the run logged for
    evaluation, else its training dataset. The target is the one column of the dataset that is not
    a model input, or ``target`` when an endpoint names it."""
    if resolved.evaluation_uri:
        dataset, uri = "evaluation", resolved.evaluation_uri
    elif resolved.dataset_uris:
        dataset, uri = "training", resolved.dataset_uris[0]
    else:
        return "no evaluation or training dataset in the run's lineage"
    names = [n for n, _ in signature_columns(resolved.signature)]
    if not names:
        return "the model has no signature with named input columns"
    location = parse_uri(uri)
    try:
        table = _read_table(open_store(), location.ref.name, location.path)
    except (StoreError, ValueError, OSError) as exc:
        return f"cannot read the {dataset} data {uri}: {exc}"
    missing = [n for n in names if n not in table.columns]
    if missing:
        return f"the {dataset} data lacks the model's inputs {missing}"
    if target is None:
        others = [str(c) for c in table.columns if c not in names]
        if len(others) != 1:
            listed = ", ".join(others) or "none"
            return (
                f"the {dataset} data has {len(others)} columns besides the model's inputs ({listed}): "
                "name the target with the endpoint option target_column"
            )
        target = others[0]
    elif target not in table.columns:
        return f"the {dataset} data has no target column {target!r}"
    return EvaluationData(dataset, uri, target, table[names], table[target])


def prediction_values(predictions: Any) -> np.ndarray | None:
    """Numeric predictions as a flat array (first column), or None when they are not numeric."""
    array = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions)
    if array.ndim > 1:
        array = array[:, 0]
    return array.astype(np.float64) if array.dtype.kind in "biuf" else None
