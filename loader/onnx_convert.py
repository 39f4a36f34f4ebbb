"""``python -m loader.onnx_convert MODEL_DIR INPUTS OUT [PRECISION]``: convert an MLflow sklearn model
to ONNX in a separate process. INPUTS is JSON: the number of float columns of one matrix input,
or a typed signature's ``[[name, type], ...]``.

The gateway runs conversions here rather than in a thread: skl2onnx is pure Python that holds
the GIL for seconds on a large forest (every request would wait for it), and its garbage
would stay in the serving process's heap. The child loads the model from the verified cache
directory, writes the graph atomically and exits; the parent checks equivalence itself.

The child dies with its gateway: a conversion outliving the process that owns the cache would
write into a directory nobody owns any more (and a large forest takes minutes to convert).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path

PARENT_PID_ENV = "LOCKGATE_CONVERT_PARENT_PID"  # set by loader.onnx_fast_path.convert_in_child


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit as soon as ``parent_pid`` is no longer this process's parent (it died, and the
    child was re-parented). A watch thread rather than PR_SET_PDEATHSIG: that needs a
    preexec_fn, which is unsafe in the gateway's multi-threaded process, and Linux alone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(3)  # no cleanup to run: the graph is written atomically, or not at all

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, inputs, out = Path(argv[0]), json.loads(argv[1]), Path(argv[2])
    precision = argv[3] if len(argv) == 4 else "float32"
    if os.environ.get(PARENT_PID_ENV):
        exit_with_parent(int(os.environ[PARENT_PID_ENV]))
    warnings.filterwarnings("ignore")
    import mlflow.sklearn

    from loader.onnx_fast_path import convert_to_bytes, write_atomically

    estimator = mlflow.sklearn.load_model(str(model_dir))
    typed = inputs if isinstance(inputs, int) else [(str(name), str(kind)) for name, kind in inputs]
    write_atomically(out, convert_to_bytes(estimator, typed, precision))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
