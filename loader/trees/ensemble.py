"""A tree ensemble as lockgate runs it: the table of its trees (``table.TreeTable``), where each
output's sum starts, whether a forest averages, and the library's own last step (a sigmoid, a
softmax, labels). The walk and the sum run in onnxruntime (``onnx_kernel``); ``finish`` turns the
sums into what the native model's ``predict`` returns, in its dtype and shape, so the answer's
bytes can be compared, and served, as MLflow's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.loader.trees.onnx_kernel import Feed, graph_bytes, one_thread_session
from lockgate.loader.trees.table import TreeTable

Finish = Callable[[np.ndarray], np.ndarray]


def identity(sums: np.ndarray) -> np.ndarray:
    """One output's sums as the plain vector a regressor answers, several as a matrix."""
    return sums[:, 0] if sums.shape[1] == 1 else sums


@dataclass(frozen=True)
class EnsembleEngine:
    table: TreeTable
    groups: int  # outputs summed separately (classes of a multi-class model), trees interleaved
    start: np.ndarray  # per group: where the sum starts (XGBoost's base margin; else 0)
    finish: Finish  # sums (rows, groups) -> the native predict's answer
    library: str  # "xgboost", "lightgbm" or "sklearn"
    average: bool = False  # a forest: the sum divided by the number of trees

    def graph(self) -> bytes:
        return graph_bytes(self.table, self.groups, self.start, self.average)

    def kernel(self, onnx_bytes: bytes | None = None, beyond: Finish | None = None) -> TreeKernel:
        graph = onnx_bytes or self.graph()
        return TreeKernel(one_thread_session(graph), Feed.of(self.table), self.finish, beyond, graph)


FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class TreeKernel:
    """The engine's predictor: a float64 matrix in signature order -> the answer.

    A library that casts features to float32 (XGBoost, scikit-learn) turns a value beyond
    float32's range into infinity, or refuses it; such rows go to ``beyond`` (the model's own
    predict), so they get the model's own answer or its own error, never the engine's guess."""

    session: Any
    feed: Feed
    finish: Finish
    beyond: Finish | None = None
    graph: bytes = b""  # the graph the session runs (what a record keeps)

    def sums(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {"X": self.feed(matrix)})[0])

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        if self.beyond is not None and self.feed.rounds_to_float32:
            outside = np.abs(matrix) > FLOAT32_MAX
            if outside.any():
                return self._split(matrix, outside.any(axis=1))
        return self.finish(self.sums(matrix))

    def _split(self, matrix: np.ndarray, outside: np.ndarray) -> np.ndarray:
        assert self.beyond is not None
        theirs = np.asarray(self.beyond(matrix[outside]))  # raises as the model raises
        if outside.all():
            return theirs
        ours = self.finish(self.sums(matrix[~outside]))
        answer = np.empty((len(matrix), *ours.shape[1:]), dtype=ours.dtype)
        answer[~outside], answer[outside] = ours, theirs
        return answer
