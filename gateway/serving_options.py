"""Per-endpoint serving options: the ONNX fast path and adaptive batching.

Kept free of heavy imports: settings and the CLI's ``--help`` load it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ServingOptions:
    """Per-endpoint serving options (CLI flags, the config file, the deploy API)."""

    onnx: bool = True
    batching: bool | None = None  # None: on for row-wise paths
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 2.0
    onnx_spinning: bool = False  # onnxruntime's spinning intra-op threads: for large-batch endpoints
    # "auto": the fast path's declared contract (float64, or float32 within 1e-5 for tree
    # regressors); "exact": only answers bit-identical to the native model.
    precision: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return {
            "onnx": self.onnx,
            "batching": self.batching,
            "max_batch_rows": self.max_batch_rows,
            "max_batch_wait_ms": self.max_batch_wait_ms,
            "onnx_spinning": self.onnx_spinning,
            "precision": self.precision,
        }


PRECISIONS = ("auto", "exact")
# The one list of option names, for the deploy API, the config file and the CLI to share.
OPTION_FIELDS = tuple(field.name for field in fields(ServingOptions))
