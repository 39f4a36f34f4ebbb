"""V2 over gRPC against V2 over REST (JSON), on lockgate's gRPC front, at 1 row and at 1,024 rows.

    .venv/bin/python bench/grpc_vs_rest.py [--models iris,wide,forest] [--pairs 3] [--seconds 4]

One ``lockgate serve --grpc-port`` per model; h2load is the client of both (HTTP/1.1 for REST,
HTTP/2 for gRPC), 16 connections. Four bodies per size, the same rows:

    REST, one input per column    JSON ``data`` lists (what most V2 REST clients send)
    REST, one [rows, columns]     one FP64 matrix input, JSON
    gRPC, typed contents          one input per column, ``fp64_contents``
    gRPC, raw contents            one [rows, columns] FP64 input in ``raw_input_contents``
                                  (what tritonclient sends)

Each gRPC load is paired with the REST load of the same shape in ABBA order; the report gives the
median ratio (gRPC / REST) of req/s and of the server's CPU per request. ``wide`` is a 40-column
logistic regression (the transport dominates); ``forest`` 300 trees on 40 columns (the predict
does).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from commit_ab import TABLE_HEAD, ab, measured, row, write_table  # noqa: E402
from serving_bench import (  # noqa: E402
    build_models,
    grpc_body,
    h2load,
    register,
    start,
    stop_group,
    v2_body,
    v2_matrix_body,
)


def grpc_raw_body(frame: pd.DataFrame, rows: int, model: str) -> bytes:
    """The rows as one [rows, columns] FP64 tensor in ``raw_input_contents``, gRPC-framed."""
    from lockgate.gateway.protocols.v2.grpc_service import protos

    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=rows)
    matrix = np.ascontiguousarray(sample.to_numpy(np.float64))
    request = protos.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", shape=list(matrix.shape), datatype="FP64")
    request.raw_input_contents.append(matrix.tobytes())
    message: bytes = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="iris,wide,forest")
    parser.add_argument("--sizes", default="1,1024")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    lines = [
        f"# V2 gRPC (B) against V2 REST JSON (A), h2load, 16 connections: {args.pairs} ABBA pairs of "
        f"{args.seconds} s; median of the pairs' B/A ratios; CPU: the server's process group, per request",
        "",
        *TABLE_HEAD,
    ]
    with tempfile.TemporaryDirectory(prefix="lockgate-grpc-rest-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models(args.models.split(","))
        register(models, work, tracking)
        for model in models:
            server = start("lockgate", model.name, work, tracking, 0)
            log = work / "h2load.log"
            infer = f"{server.url}/v2/models/{model.name}/infer"
            grpc_url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"
            try:
                h2load(infer, _write(work, "warm.json", v2_body(model.frame, 1)), 16, 2, grpc=False, log=log)
                for rows in (int(size) for size in args.sizes.split(",")):
                    shapes = {
                        ("per column", "typed contents"): (v2_body(model.frame, rows),
                                                           grpc_body(model.frame, rows, model.name)),
                        ("[rows, columns]", "raw contents"): (v2_matrix_body(model.frame, rows),
                                                              grpc_raw_body(model.frame, rows, model.name)),
                    }  # fmt: skip
                    for (rest_shape, grpc_shape), (rest_body, grpc_message) in shapes.items():
                        rest_file = _write(work, f"rest-{rows}.json", rest_body)
                        grpc_file = _write(work, f"grpc-{rows}.bin", grpc_message)
                        rest = partial(h2load, infer, rest_file, 16, args.seconds, grpc=False, log=log)
                        grpc = partial(h2load, grpc_url, grpc_file, 16, args.seconds, grpc=True, log=log)
                        result = ab(partial(measured, rest, server.proc.pid), partial(measured, grpc, server.proc.pid),
                                    args.pairs)  # fmt: skip
                        load = (f"{rows:,} row(s): REST {rest_shape} ({len(rest_body) / 1024:,.1f} KiB) -> "
                                f"gRPC {grpc_shape} ({len(grpc_message) / 1024:,.1f} KiB)")  # fmt: skip
                        line = row(model.name, load, result)
                        print(line, flush=True)
                        lines.append(line)
            finally:
                stop_group(server.proc)
    write_table(lines, args.out)


def _write(folder: Path, name: str, body: bytes) -> Path:
    path = folder / name
    path.write_bytes(body)
    return path


if __name__ == "__main__":
    main()
