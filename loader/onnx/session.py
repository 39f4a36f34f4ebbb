"""An onnxruntime session with lockgate's options: the one place a graph becomes a session, for
the fast path's deploys and for a warm restart's preload (``graph_preload``), which builds its
sessions before the fast path is imported."""

from __future__ import annotations

from typing import Any


def build_session(onnx_bytes: bytes, spinning: bool = False) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Spinning intra-op threads burn the core the event loop needs: off by default. On the
    # 300-tree forest, on gives +17 % rows/s for 1,024-row requests and -3..25 % req/s for
    # 1-row requests (docs/performance.md); large-batch endpoints may want it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
