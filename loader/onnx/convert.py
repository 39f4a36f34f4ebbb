"""``python -m loader.onnx.convert MODEL_DIR INPUTS OUT [PRECISION]``: convert an MLflow sklearn model
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
import sys
import warnings
from pathlib import Path

from lockgate.loader.parent_watch import exit_with_parent


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, inputs, out = Path(argv[0]), json.loads(argv[1]), Path(argv[2])
    precision = argv[3] if len(argv) == 4 else "float32"
    exit_with_parent()
    warnings.filterwarnings("ignore")
    import mlflow.sklearn

    from lockgate.loader.atomic_file import write_atomically
    from lockgate.loader.onnx.fast_path import convert_to_bytes

    estimator = mlflow.sklearn.load_model(str(model_dir))
    typed = inputs if isinstance(inputs, int) else [(str(name), str(kind)) for name, kind in inputs]
    write_atomically(out, convert_to_bytes(estimator, typed, precision))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
