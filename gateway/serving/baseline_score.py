"""A version's baseline score: what the model itself scores on the dataset its run logged for
evaluation (or, without one, on its training data: an optimistic baseline), worked out once per
deploy, after the gateway is ready, with the native model. ``lockgate_baseline_score`` exports
it beside ``lockgate_live_score``, so an alert can say when live quality falls below it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.loader.baseline import EvaluationData, evaluation_data
from lockgate.loader.model_loader import ServableModel
from lockgate.monitoring.live_score import scores
from lockgate.store import Store


@dataclass(frozen=True)
class BaselineScore:
    dataset: str  # "evaluation" or "training"
    uri: str = ""
    target: str = ""
    rows: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why there is no score, when there is none

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "uri": self.uri, "target": self.target, "rows": self.rows,
                "scores": self.scores, "reason": self.reason}  # fmt: skip


def baseline_score(open_store: Callable[[], Store], servable: ServableModel, target: str | None) -> BaselineScore:
    """Score the native model on its evaluation (or training) rows, as ``lockgate_live_score``
    scores its live answers. Blocking: the predict runs here."""
    data = evaluation_data(open_store, servable.resolved, target)
    if not isinstance(data, EvaluationData):
        return BaselineScore("none", reason=data)
    try:
        predictions = servable.model.predict(data.inputs)
    except Exception as exc:
        return BaselineScore(data.dataset, data.uri, data.target, reason=f"the model failed on the {data.dataset} "
                             f"data: {type(exc).__name__}: {exc}")  # fmt: skip
    values = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions)
    if values.ndim > 1:
        values = values[:, 0]
    found = scores(zip(values.tolist(), data.labels.tolist(), strict=True))
    return BaselineScore(data.dataset, data.uri, data.target, len(values), found)
