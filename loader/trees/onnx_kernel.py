"""The tree table as one ONNX ``TreeEnsemble`` node (``ai.onnx.ml`` opset 5), for onnxruntime's
C++ tree kernel: the walk and the leaf sum at C speed, in the table's own precision.

Opset 5's ``TreeEnsemble`` takes thresholds and leaf weights as tensors of the input's type, so a
float64 model (LightGBM, a scikit-learn forest) keeps float64 thresholds and a float64 sum, which
the older ``TreeEnsembleRegressor`` (float outputs) cannot. onnxruntime adds the trees' leaves in
tree order when it runs on one thread (several threads would add partial sums in another order),
so the session here has one thread. What the graph leaves out, lockgate does around it, in
numpy: a sum that starts elsewhere than zero is folded into the first tree's leaves (the
libraries add their start to the first leaf first, so ``start + leaf`` is the very same float),
and the library's own last step (average, sigmoid, softmax, labels) runs on the graph's sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.loader.trees.table import EngineUnavailable, TreeTable

_LEQ, _LT = 0, 1  # TreeEnsemble's node modes: x <= split, x < split take the true branch
OPSET_ML = 5


def graph_bytes(table: TreeTable, groups: int, start: np.ndarray, average: bool) -> bytes:
    """An ONNX graph computing, for input ``X`` [N, features], the leaf sums [N, groups]
    (trees interleaved by group, each group's sum started at ``start``; ``average``: divided by
    the number of trees per group, as a forest does)."""
    from onnx import TensorProto, helper, numpy_helper

    if table.zero_missing is not None:
        raise EngineUnavailable("zero-as-missing splits have no ONNX node mode")
    dtype = np.dtype(table.threshold.dtype)
    if np.dtype(table.leaf_value.dtype) != dtype:
        raise EngineUnavailable("thresholds and leaves differ in precision")
    # A float32 feature against a float64 threshold (scikit-learn) is fed as the float32 value
    # widened to float64 (``Feed``): the comparison scikit-learn makes.
    is_leaf = table.left == np.arange(table.nodes)
    if is_leaf[table.roots].any():
        raise EngineUnavailable("a tree is a single leaf")
    split_index = np.cumsum(~is_leaf) - 1  # node number -> index among splits
    leaf_index = np.cumsum(is_leaf) - 1  # node number -> index among leaves
    leaf_weight = table.leaf_value.astype(np.float64).copy()
    leaf_group = np.zeros(table.nodes, dtype=np.int64)
    first_tree_of_group: dict[int, int] = {}
    for tree, root in enumerate(table.roots.tolist()):
        end = int(table.roots[tree + 1]) if tree + 1 < table.trees else table.nodes
        group = tree % groups
        leaf_group[root:end] = group
        if group not in first_tree_of_group:
            first_tree_of_group[group] = tree
            if start[group] != 0:
                # The library adds its start to the first leaf; that sum, made here in its dtype.
                leaves = is_leaf[root:end]
                span = leaf_weight[root:end]
                span[leaves] = (dtype.type(start[group]) + table.leaf_value[root:end][leaves]).astype(np.float64)
    splits = np.flatnonzero(~is_leaf)
    leaves_at = np.flatnonzero(is_leaf)

    def target(child: np.ndarray) -> tuple[list[int], list[int]]:
        child_is_leaf = is_leaf[child]
        return np.where(child_is_leaf, leaf_index[child], split_index[child]).tolist(), child_is_leaf.astype(
            int
        ).tolist()

    true_ids, true_leafs = target(table.left[splits])
    false_ids, false_leafs = target(table.right[splits])
    tensor_type = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    node = helper.make_node(
        "TreeEnsemble",
        ["X"],
        ["Y"],
        domain="ai.onnx.ml",
        aggregate_function=0 if average else 1,
        post_transform=0,
        n_targets=groups,
        tree_roots=split_index[table.roots].tolist(),
        nodes_featureids=table.feature[splits].tolist(),
        nodes_splits=numpy_helper.from_array(table.threshold[splits].astype(dtype)),
        nodes_modes=numpy_helper.from_array(np.full(len(splits), _LT if table.strict else _LEQ, dtype=np.uint8)),
        nodes_truenodeids=true_ids,
        nodes_trueleafs=true_leafs,
        nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leafs,
        nodes_missing_value_tracks_true=table.nan_left[splits].astype(int).tolist(),
        leaf_targetids=leaf_group[leaves_at].tolist(),
        leaf_weights=numpy_helper.from_array(leaf_weight[leaves_at].astype(dtype)),
    )
    graph = helper.make_graph(
        [node],
        "lockgate-trees",
        [helper.make_tensor_value_info("X", tensor_type, [None, None])],
        [helper.make_tensor_value_info("Y", tensor_type, [None, groups])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", OPSET_ML)]
    )
    model.ir_version = 10
    return bytes(model.SerializeToString())


@dataclass(frozen=True)
class Feed:
    """How a matrix becomes the graph's input: the library's feature rounding, its zero reading,
    the graph's dtype. Data only: a restart rebuilds it from the engine's record."""

    feature_dtype: str  # "float32" or "float64"
    graph_dtype: str
    zero_below: float | None = None

    @staticmethod
    def of(table: TreeTable) -> Feed:
        return Feed(np.dtype(table.feature_dtype).name, table.threshold.dtype.name, table.zero_below)

    @property
    def rounds_to_float32(self) -> bool:
        return self.feature_dtype == "float32"

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """The features rounded as the library rounds them, in the graph's dtype."""
        rounded = np.ascontiguousarray(matrix, dtype=np.dtype(self.feature_dtype))
        if self.zero_below is not None:
            tiny = np.abs(rounded) <= self.zero_below
            if tiny.any():
                rounded = np.where(tiny, 0.0, rounded)
        return rounded.astype(np.dtype(self.graph_dtype), copy=False)


def one_thread_session(onnx_bytes: bytes) -> Any:
    """An onnxruntime session on one thread: one thread adds the trees in order (see above)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
