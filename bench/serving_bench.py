"""Serving side by side: ``lockgate serve`` against ``mlflow models serve``, in one run.

    .venv/bin/python bench/serving_bench.py [--seconds 8] [--rounds 2] [--models iris,diabetes,forest,fraud]
    .venv/bin/python bench/serving_bench.py --models xgboost,lightgbm,diabetes,diabetes-float32

1. Builds the models named: iris LogisticRegression, a diabetes RandomForestRegressor (100
   trees; exact by default on the tree engine, and ``diabetes-float32``: the same forest with
   ``LOCKGATE_PRECISION=float32``, its float32 ONNX graph), a RandomForestClassifier (300 trees,
   40 features, ~50 MB), ``fraud``, a typed pipeline (a ColumnTransformer: OneHotEncoder on two
   string columns, StandardScaler on a double and a long column, and a RandomForestClassifier,
   100 trees), and ``xgboost`` / ``lightgbm``: an XGBClassifier and an LGBMClassifier of 300
   trees on 20 features, logged with MLflow's own flavors (not in the default list).
2. Registers them in one sqlite registry, their files in a lockgate store
   (``mlflow models serve`` reads the same versions through lockgate's artifact plugin).
3. For each model, alternates A (MLflow), B (lockgate), A, B ... Each start uses an empty
   lockgate cache, so lockgate's start-to-ready is a cold start: fetch, load, ONNX conversion
   and its equivalence check, skew baseline.
4. Drives the same payloads with Debian's ``wrk`` (C, one thread, so the load generator is not
   the bottleneck): 1-row and 32-row and 1,024-row requests from 16 connections, and 1-row
   requests from 1 connection (the gateway overhead).
5. Prints req/s, rows/s, p50 and p99 latency, errors, start-to-ready, resident memory (the whole
   process tree: MLflow's CLI process, its bash and uvicorn) and lockgate/MLflow ratios, plus
   the in-process predict time of the path that serves. Writes the tables to
   ``bench/results/serving.md`` and ``.json``.

``--protocols-only`` runs lockgate alone: 1-row /invocations, V2 REST and V2 gRPC, the ratios the
V2 issue sets, each the median of ``--pairs`` back-to-back A/B loads of ``--seconds``, into
``bench/results/protocols.md``. ``--startup-only`` times start-to-ready only.

Before any load, the two servers' predictions on the same 32 rows are compared (ONNX:
relative 1e-5 for regressors, identical labels for classifiers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris, make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from lockgate.loader.onnx.fast_path import build_onnx_predictor, convert_to_bytes  # noqa: E402
from lockgate.loader.onnx.session import build_session  # noqa: E402
from lockgate.loader.trees.choice import choose  # noqa: E402
from lockgate.loader.trees.models import describe, is_tree_model  # noqa: E402
from tests.servers import free_port, stop_group  # noqa: E402

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
VENV_BIN = Path(sys.executable).parent


@dataclass
class BenchModel:
    name: str
    description: str
    frame: pd.DataFrame
    estimator: Any
    flavor: str = "sklearn"  # the MLflow flavor it is logged with
    lockgate_env: dict[str, str] = field(default_factory=dict)  # settings of lockgate's runs


def gradient_boosted(library: str) -> BenchModel:
    X_raw, y = make_classification(n_samples=10000, n_features=20, n_informative=12, random_state=0)
    X = pd.DataFrame(X_raw, columns=[f"f{i:02d}" for i in range(20)])
    if library == "xgboost":
        import xgboost

        model: Any = xgboost.XGBClassifier(n_estimators=300, max_depth=6, n_jobs=2).fit(X, y)
        return BenchModel("xgboost", "XGBClassifier, 300 trees (depth 6), 20 features", X, model, "xgboost")
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=300, num_leaves=31, verbose=-1, n_jobs=2).fit(X, y)
    return BenchModel("lightgbm", "LGBMClassifier, 300 trees (31 leaves), 20 features", X, model, "lightgbm")


def build_models(selected: list[str]) -> list[BenchModel]:
    out = []
    if "iris" in selected:
        iris = load_iris(as_frame=True)
        X = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
        out.append(
            BenchModel("iris", "iris LogisticRegression", X, LogisticRegression(max_iter=1000).fit(X, iris.target))
        )
    if "diabetes" in selected or "diabetes-float32" in selected:
        diabetes = load_diabetes(as_frame=True)
        X = diabetes.data
        forest = RandomForestRegressor(n_estimators=100, random_state=0, n_jobs=-1).fit(X, diabetes.target)
        forest.n_jobs = None  # trained on both cores; served single-threaded, as a deployed model would be
        if "diabetes" in selected:
            out.append(BenchModel("diabetes", "diabetes RandomForest, 100 trees (exact: the tree engine)", X, forest))
        if "diabetes-float32" in selected:
            described = "diabetes RandomForest, 100 trees, precision float32 (ONNX graph)"
            float32 = {"LOCKGATE_PRECISION": "float32"}
            out.append(BenchModel("diabetes-float32", described, X, forest, lockgate_env=float32))
    for library in ("xgboost", "lightgbm"):
        if library in selected:
            out.append(gradient_boosted(library))
    if "forest" in selected:
        X_raw, y = make_classification(n_samples=11000, n_features=40, n_informative=20, random_state=0)
        X = pd.DataFrame(X_raw, columns=[f"f{i:02d}" for i in range(40)])
        forest = RandomForestClassifier(n_estimators=300, random_state=0, n_jobs=-1).fit(X, y)
        forest.n_jobs = None  # see above: joblib's per-call thread start-up would slow MLflow's predict
        out.append(BenchModel("forest", "RandomForestClassifier, 300 trees, 40 features", X, forest))
    if "wide" in selected:  # 40 columns and a cheap predict: what a large request's transport costs
        X_raw, y = make_classification(n_samples=4000, n_features=40, n_informative=20, random_state=0)
        X = pd.DataFrame(X_raw, columns=[f"f{i:02d}" for i in range(40)])
        out.append(
            BenchModel("wide", "LogisticRegression, 40 features", X, LogisticRegression(max_iter=1000).fit(X, y))
        )
    if "fraud" in selected:
        out.append(fraud_pipeline())
    return out


def fraud_pipeline() -> BenchModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    rows = 5000
    X = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 50.0, rows).round(2),
            "hour": rng.integers(0, 24, rows).astype(np.int64),
            "merchant": rng.choice(["grocery", "travel", "online", "fuel", "casino", "pharmacy"], rows),
            "country": rng.choice(["DE", "FR", "US", "GB", "NL"], rows),
        }
    )
    y = (((X["merchant"] == "travel") & (X["amount"] > 80)) | (X["hour"] < 4) | (rng.random(rows) < 0.05)).astype(int)
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["merchant", "country"]),
            ("numbers", StandardScaler(), ["amount", "hour"]),
        ]
    )
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=-1)
    pipeline = Pipeline([("encode", encode), ("forest", forest)]).fit(X, y)
    forest.n_jobs = None  # see above
    return BenchModel("fraud", "fraud Pipeline(ColumnTransformer + OneHotEncoder, RandomForest 100 trees)", X, pipeline)


def is_numeric(frame: pd.DataFrame) -> bool:
    return all(kind == np.float64 for kind in frame.dtypes)


def register(models: list[BenchModel], work: Path, tracking: str) -> None:
    os.environ["LOCKGATE_STORE"] = str(work / "store")
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("bench", artifact_location="lockgate://models@main/bench")
    )
    for model in models:
        with mlflow.start_run():
            if model.flavor != "sklearn":
                getattr(mlflow, model.flavor).log_model(
                    model.estimator, name="model", registered_model_name=model.name, input_example=model.frame.head(2)
                )
                continue
            # cloudpickle: what the demo uses (skops dedups badly across versions; see docs/store.md).
            mlflow.sklearn.log_model(
                model.estimator,
                name="model",
                registered_model_name=model.name,
                input_example=model.frame.head(2),
                serialization_format="cloudpickle",
            )


def grpc_body(frame: pd.DataFrame, rows: int, model: str) -> bytes:
    """The same rows as a gRPC ``ModelInferRequest`` in its HTTP/2 framing (a 0 compression flag
    and a 4-byte big-endian length before the message), for h2load to post."""
    from lockgate.gateway.protocols.v2.grpc_service import protos

    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=rows)
    request = protos.ModelInferRequest(model_name=model)
    for column in sample.columns:
        values = sample[column]
        tensor = request.inputs.add(name=column, shape=[rows])
        if values.dtype.kind == "f":
            tensor.datatype = "FP64"
            tensor.contents.fp64_contents.extend(values.tolist())
        elif values.dtype.kind in "iu":
            tensor.datatype = "INT64"
            tensor.contents.int64_contents.extend(values.tolist())
        else:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
    message: bytes = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(url: str, body_file: Path, connections: int, seconds: int, *, grpc: bool, log: Path) -> dict[str, Any]:
    """nghttp2's h2load (C): HTTP/2 for gRPC, HTTP/1.1 (--h1) otherwise; latencies from its log."""
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"] if grpc else [
        "-H", "content-type: application/json"]  # fmt: skip
    log.unlink(missing_ok=True)
    subprocess.run(
        [shutil.which("h2load") or "h2load", *([] if grpc else ["--h1"]), "-c", str(connections), "-m", "1",
         "-D", str(seconds), "-d", str(body_file), *headers, "--log-file", str(log), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    durations = sorted(int(fields[2]) for fields in lines)
    errors = sum(1 for fields in lines if not fields[1].startswith("2"))
    started = [int(fields[0]) for fields in lines]
    span = (max(started) - min(started)) / 1e6 if len(started) > 1 else float(seconds)
    return {
        "req_s": len(lines) / max(span, 1e-9),
        "p50_ms": durations[len(durations) // 2] / 1000,
        "p99_ms": durations[int(len(durations) * 0.99)] / 1000,
        "errors": errors,
        "requests": len(lines),
    }


def protocol_loads(
    server: Running,
    model: str,
    *,
    split_file: Path,
    v2_file: Path,
    grpc_file: Path,
    seconds: int,
    work: Path,
    v2_matrix_file: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """1-row loads on lockgate alone: V2 REST with wrk (one input per column, and for an all-numeric
    model one [1, columns] matrix, as Triton clients send a feature vector), then /invocations,
    V2 REST and V2 gRPC with one load generator (h2load), so the protocols are compared by the
    same client."""
    infer = f"{server.url}/v2/models/{model}/infer"
    grpc_url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"
    log = work / "h2load.log"
    matrix = {}
    if v2_matrix_file is not None:
        matrix[V2_MATRIX_LOAD] = wrk(server.url, v2_matrix_file, 16, seconds, f"/v2/models/{model}/infer")
    return matrix | {
        V2_LOAD: wrk(server.url, v2_file, 16, seconds, f"/v2/models/{model}/infer"),
        H2_INVOCATIONS: h2load(server.url + "/invocations", split_file, 16, seconds, grpc=False, log=log),
        H2_V2_REST: h2load(infer, v2_file, 16, seconds, grpc=False, log=log),
        H2_GRPC: h2load(grpc_url, grpc_file, 16, seconds, grpc=True, log=log),
    }


def write_protocol_bodies(model: BenchModel, work: Path) -> tuple[Path, Path | None, Path]:
    """The 1-row protocol bodies of ``model``: V2 REST one input per column, V2 REST one matrix
    (all-numeric models only, else None) and a gRPC ``ModelInferRequest``."""
    v2_file = work / f"{model.name}-v2-1.json"
    v2_file.write_bytes(v2_body(model.frame, 1))
    v2_matrix_file = None
    if is_numeric(model.frame):
        v2_matrix_file = work / f"{model.name}-v2-matrix-1.json"
        v2_matrix_file.write_bytes(v2_matrix_body(model.frame, 1))
    grpc_file = work / f"{model.name}-grpc-1.bin"
    grpc_file.write_bytes(grpc_body(model.frame, 1, model.name))
    return v2_file, v2_matrix_file, grpc_file


def v2_body(frame: pd.DataFrame, rows: int) -> bytes:
    """The same rows as ``split_body`` as a V2 request: one JSON input per column."""
    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=rows)
    inputs = []
    for column in sample.columns:
        values = sample[column]
        kind = values.dtype.kind
        datatype = "FP64" if kind == "f" else "INT64" if kind in "iu" else "BOOL" if kind == "b" else "BYTES"
        inputs.append({"name": column, "shape": [rows], "datatype": datatype, "data": values.tolist()})
    return json.dumps({"inputs": inputs}).encode()


def v2_matrix_body(frame: pd.DataFrame, rows: int) -> bytes:
    """The same rows as one FP64 input of shape [rows, columns], in signature order."""
    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=rows)
    matrix = sample.to_numpy(np.float64)
    return json.dumps({"inputs": [{"name": "input", "shape": list(matrix.shape), "datatype": "FP64",
                                   "data": matrix.reshape(-1).tolist()}]}).encode()  # fmt: skip


def split_body(frame: pd.DataFrame, rows: int) -> bytes:
    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=rows)
    if not is_numeric(sample):  # typed columns: pandas writes each value with its JSON type
        split = json.loads(sample.to_json(orient="split", index=False, double_precision=15))
        return json.dumps({"dataframe_split": split}).encode()
    return json.dumps(
        {"dataframe_split": {"columns": list(frame.columns), "data": sample.to_numpy().tolist()}}
    ).encode()


# -- processes -----------------------------------------------------------------------------------


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    start_seconds: float
    log: Path
    settled_seconds: float
    grpc_port: int = 0  # lockgate's V2 gRPC port


def start(
    kind: str, model: str, work: Path, tracking: str, run: int, *, cache: Path | None = None,
    settings: dict[str, str] | None = None,
) -> Running:  # fmt: skip
    """Start one server and time it to ready. ``cache`` (lockgate only) reuses a cache directory:
    a warm restart, served from the local pin; without it every start is cold."""
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_REGISTRY_URI": tracking,
        "LOCKGATE_STORE": str(work / "store"),
    }
    log = work / f"{kind}-{model}-{run}.log"
    if kind == "mlflow":
        command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}/1", "--env-manager", "local"]
        ready_path = "/ping"
    else:
        cache = cache or work / f"cache-{model}-{run}"  # empty unless given: a cold start
        env["LOCKGATE_CACHE_DIR"] = str(cache)
        env.update(settings or {})
        # gRPC on too, for the protocol loads (its import and proto compile add ~0.2 s to the start).
        command = [str(VENV_BIN / "lockgate"), "serve", f"models:/{model}/1", "--grpc-port", str(grpc_port)]
        ready_path = "/ready"
    command += ["--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + ready_path, proc)
        ready = time.perf_counter() - started
        settled = ready
        if kind == "lockgate":
            wait_settled(url, model)  # the background ONNX conversion: load starts on the final path
            settled = time.perf_counter() - started
    except BaseException:
        stop_group(proc)
        raise
    return Running(proc, url, ready, log, settled, grpc_port)


def wait_settled(url: str, endpoint: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/endpoints/{endpoint}") as answer:
            if not json.loads(answer.read())["serving"]["onnx_pending"]:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{endpoint}: the ONNX conversion did not settle in {timeout}s")


def post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.loads(response.read()))


def wrk(url: str, body_file: Path, connections: int, seconds: int, path: str = "/invocations") -> dict[str, Any]:
    result = subprocess.run(
        [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "20s",
         "-s", str(WRK_SCRIPT), url + path],
        env={**os.environ, "BODY_FILE": str(body_file)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    errors = sum(v for k, v in summary.items() if k.startswith("errors_"))
    seconds_run = summary["duration_us"] / 1e6
    return {
        "req_s": summary["requests"] / seconds_run,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": errors,
        "requests": summary["requests"],
    }


# -- in-process reference times ------------------------------------------------------------------


def predict_seconds(predict: Any, data: Any, repeat: int) -> float:
    predict(data)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        predict(data)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def in_process_times(model: BenchModel, work: Path) -> dict[str, float]:
    """Median in-process predict time, 1 row and 1,024 rows: MLflow's pyfunc (what
    `mlflow models serve` calls) and the ONNX session (what lockgate calls)."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.name}/1")
    rows = model.frame.sample(n=1024, replace=True, random_state=1)
    one = rows.head(1)
    out = {
        "mlflow_pyfunc_1_ms": predict_seconds(pyfunc.predict, one, 200) * 1000,
        "mlflow_pyfunc_1024_ms": predict_seconds(pyfunc.predict, rows, 20) * 1000,
    }
    if model.flavor != "sklearn" or (
        model.lockgate_env.get("LOCKGATE_PRECISION") != "float32" and is_tree_model(model.estimator)
    ):
        return out | tree_engine_times(model, rows, pyfunc)
    if not is_numeric(rows):  # typed: the native pipeline on a DataFrame, and its float64 graph
        out["native_1_ms"] = predict_seconds(model.estimator.predict, one, 200) * 1000
        out["native_1024_ms"] = predict_seconds(model.estimator.predict, rows, 20) * 1000
        kinds = {"float64": "double", "int64": "long", "object": "string", "str": "string"}
        typed = [(c, kinds.get(str(rows[c].dtype), "string")) for c in rows.columns]
        session = build_session(convert_to_bytes(model.estimator, typed, "float64"))

        def feeds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
            return {c: frame[[c]].to_numpy(np.float64 if k == "double" else np.int64 if k == "long" else object)
                    for c, k in typed}  # fmt: skip

        one_feeds, all_feeds = feeds(one), feeds(rows)
        out["onnx_1_ms"] = predict_seconds(lambda f: session.run(None, f), one_feeds, 2000) * 1000
        out["onnx_1024_ms"] = predict_seconds(lambda f: session.run(None, f), all_feeds, 50) * 1000
        return out
    predictor, verdict = build_onnx_predictor(
        model.estimator, list(model.frame.columns), rows.to_numpy(np.float64), work / f"onnx-reference-{model.name}"
    )
    if predictor is not None:
        matrix = rows.to_numpy(np.float64)
        out["onnx_1_ms"] = predict_seconds(predictor.predict, matrix[:1], 2000) * 1000
        out["onnx_1024_ms"] = predict_seconds(predictor.predict, matrix, 50) * 1000
    else:
        print(f"  (ONNX check failed for {model.name}: {verdict.reason})")
    return out


def tree_engine_times(model: BenchModel, rows: pd.DataFrame, pyfunc: Any) -> dict[str, float]:
    """lockgate's tree engine in process (what the ``trees`` path calls), as the deploy check
    chose it: one row and 1,024 rows, and the library's own lean predict beside it."""
    matrix = rows.to_numpy(np.float64)
    columns = list(rows.columns)

    def reference(m: np.ndarray) -> np.ndarray:
        return np.asarray(pyfunc.predict(pd.DataFrame(m, columns=columns)))

    native = None
    if model.flavor == "sklearn":
        estimator = model.estimator
        native = lambda m: np.asarray(estimator.predict(pd.DataFrame(np.asfortranarray(m), columns=columns)))  # noqa: E731
    described = describe(model.estimator, native)
    predict, verdict = choose(described, reference, matrix[:200])
    if predict is None or described.engine is None:
        print(f"  (the tree engine does not serve {model.name}: {verdict.refused})")
        return {}
    engine = described.engine.kernel().predict
    return {
        "engine_1_ms": predict_seconds(engine, matrix[:1], 2000) * 1000,
        "engine_1024_ms": predict_seconds(engine, matrix, 50) * 1000,
        "library_1_ms": predict_seconds(described.native, matrix[:1], 500) * 1000,
        "library_1024_ms": predict_seconds(described.native, matrix, 20) * 1000,
    }


def compare_predictions(mlflow_url: str, lockgate_url: str, body: bytes, classifier: bool, exact: bool) -> str:
    if exact:
        request = partial(urllib.request.Request, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request(mlflow_url + "/invocations")) as theirs_answer:
            theirs_bytes = theirs_answer.read()
        with urllib.request.urlopen(request(lockgate_url + "/invocations")) as ours_answer:
            ours_bytes = ours_answer.read()
        if theirs_bytes != ours_bytes:
            raise SystemExit(f"an exact path answered other bytes: {ours_bytes[:200]!r} vs {theirs_bytes[:200]!r}")
        return "byte-identical"
    theirs = np.asarray(post(mlflow_url + "/invocations", body)["predictions"])
    ours = np.asarray(post(lockgate_url + "/invocations", body)["predictions"])
    if classifier:
        if not np.array_equal(theirs, ours):
            raise SystemExit(f"labels differ: {theirs} vs {ours}")
        return "identical labels"
    relative = float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)))
    if relative > 1e-5:
        raise SystemExit(f"predictions differ by {relative:.3g} relative")
    return f"max relative difference {relative:.1e}"


# -- the run -------------------------------------------------------------------------------------

LOADS = (("1 row, 16 conns", 1, 16), ("32 rows, 16 conns", 32, 16), ("1024 rows, 16 conns", 1024, 16),
         ("1 row, 1 conn", 1, 1))  # fmt: skip


V2_LOAD = "V2 REST, 1 row, 16 conns"
V2_MATRIX_LOAD = "V2 REST one matrix input, 1 row, 16 conns"
# The same protocols through one load generator (h2load): HTTP/1.1 for REST, HTTP/2 for gRPC.
H2_INVOCATIONS = "h2load /invocations, 1 row, 16 conns"
H2_V2_REST = "h2load V2 REST, 1 row, 16 conns"
H2_GRPC = "h2load V2 gRPC, 1 row, 16 conns"
PROTOCOL_LOADS = (V2_MATRIX_LOAD, V2_LOAD, H2_INVOCATIONS, H2_V2_REST, H2_GRPC)


@dataclass
class Tally:
    start: list[float] = field(default_factory=list)
    settled: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    loads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def mean_of(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.mean(r[key] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per load (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="A,B rounds per model (default 2)")
    parser.add_argument("--models", default="iris,diabetes,forest,fraud")
    parser.add_argument("--pairs", type=int, default=6, help="--protocols-only: paired A/B loads per ratio (default 6)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--protocols-only",
        action="store_true",
        help="only lockgate's 1-row protocols: /invocations, V2 REST (wrk and h2load) and V2 gRPC (h2load)",
    )
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only start-to-ready, alternating MLflow, a cold lockgate and a warm lockgate restart",
    )
    args = parser.parse_args()
    if args.startup_only:
        startup_only(args.models.split(","), args.rounds, args.out)
        return
    if shutil.which("wrk") is None or shutil.which("h2load") is None:
        raise SystemExit("wrk or h2load is missing: apt-get install wrk nghttp2-client (make bench installs them)")
    if args.protocols_only:
        protocols_only(args.models.split(","), args.rounds, args.seconds, args.out, args.pairs)
        return

    report: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds, "models": {}}
    with tempfile.TemporaryDirectory(prefix="lockgate-serving-bench-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models(args.models.split(","))
        register(models, work, tracking)
        for model in models:
            print(f"\n== {model.description}")
            bodies = {}
            for rows in (1, 32, 1024):
                bodies[rows] = work / f"{model.name}-{rows}.json"
                bodies[rows].write_bytes(split_body(model.frame, rows))
            v2_file, v2_matrix_file, grpc_file = write_protocol_bodies(model, work)
            reference = in_process_times(model, work)
            print("  in-process predict:", {k: round(v, 4) for k, v in reference.items()})
            tallies = {"mlflow": Tally(), "lockgate": Tally()}
            agreement = ""
            path: dict[str, Any] = {}
            for run in range(args.rounds):
                servers: dict[str, Running] = {}
                try:
                    for kind in ("mlflow", "lockgate"):
                        servers[kind] = start(kind, model.name, work, tracking, run, settings=model.lockgate_env)
                        tallies[kind].start.append(servers[kind].start_seconds)
                        tallies[kind].settled.append(servers[kind].settled_seconds)
                    with urllib.request.urlopen(f"{servers['lockgate'].url}/endpoints/{model.name}") as answer:
                        contract = (json.loads(answer.read())["serving"]["check"] or {}).get("contract", "exact")
                    agreement = compare_predictions(
                        servers["mlflow"].url,
                        servers["lockgate"].url,
                        bodies[32].read_bytes(),
                        hasattr(model.estimator, "classes_"),
                        exact=contract == "exact",
                    )
                    for label, rows, connections in LOADS:
                        for kind in ("mlflow", "lockgate"):  # A, B within every load, too
                            result = wrk(servers[kind].url, bodies[rows], connections, args.seconds)
                            result["rows_s"] = result["req_s"] * rows
                            tallies[kind].loads.setdefault(label, []).append(result)
                            print(
                                f"  round {run + 1} {label:<20} {kind:<9} {result['req_s']:>9.1f} req/s "
                                f"p50 {result['p50_ms']:>8.2f} ms p99 {result['p99_ms']:>8.2f} ms "
                                f"errors {result['errors']}"
                            )
                    # V2 REST (lockgate only: MLflow's server does not speak it), beside /invocations.
                    measured = protocol_loads(
                        servers["lockgate"], model.name, split_file=bodies[1], v2_file=v2_file,
                        grpc_file=grpc_file, seconds=args.seconds, work=work, v2_matrix_file=v2_matrix_file,
                    )  # fmt: skip
                    for label, result in measured.items():
                        tallies["lockgate"].loads.setdefault(label, []).append(result)
                        print(f"  round {run + 1} {label:<34} lockgate {result['req_s']:>9.1f} req/s "
                              f"p50 {result['p50_ms']:>8.2f} ms p99 {result['p99_ms']:>8.2f} ms "
                              f"errors {result['errors']}")  # fmt: skip
                    for kind, server in servers.items():
                        tallies[kind].rss.append(tree_rss_bytes(server.proc.pid))
                    with urllib.request.urlopen(f"{servers['lockgate'].url}/endpoints/{model.name}") as answer:
                        path = json.loads(answer.read())["serving"]
                finally:
                    for server in servers.values():
                        stop_group(server.proc)
            report["models"][model.name] = summarize(model, tallies, reference, agreement, path)
        print_report(report, args.out)


def paired(load_a: Any, load_b: Any, pairs: int) -> dict[str, Any]:
    """B's req/s over A's, from ``pairs`` short A/B loads back to back (ABBA order), and its
    median. This machine's speed drifts by 20-40 % within a minute; two loads seconds apart see
    the same machine, so the ratio of each pair is the measurement, not the ratio of means."""
    ratios, a_runs, b_runs = [], [], []
    for index in range(pairs):
        if index % 2 == 0:
            a, b = load_a(), load_b()
        else:
            b, a = load_b(), load_a()
        a_runs.append(a)
        b_runs.append(b)
        ratios.append(b["req_s"] / a["req_s"])
    return {
        "ratio": statistics.median(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "a": {k: statistics.median(r[k] for r in a_runs) for k in ("req_s", "p99_ms")},
        "b": {k: statistics.median(r[k] for r in b_runs) for k in ("req_s", "p99_ms")},
        "errors": sum(int(r["errors"]) for r in a_runs + b_runs),
    }


def protocols_only(selected: list[str], rounds: int, seconds: int, out_dir: Path, pairs: int = 6) -> None:
    """lockgate alone, 1 row at 16 connections, the ratios the V2 issue sets, each from paired
    short loads (``paired``): V2 REST against /invocations with wrk (one input per column, and
    one [1, columns] matrix for an all-numeric model), V2 REST against /invocations with h2load,
    and V2 gRPC against V2 REST with h2load (one client for both). Writes bench/results/protocols.md."""
    lines = [
        f"# lockgate's protocols, 1 row, 16 connections: {pairs} paired loads of {seconds} s per ratio, "
        f"{rounds} server start(s) per model; median ratio (range), median req/s",
        "",
        "| model | wrk: V2 REST per column / `/invocations` | wrk: V2 REST one matrix / `/invocations` "
        "| h2load: V2 REST / `/invocations` | h2load: V2 gRPC / V2 REST | req/s: `/invocations`, V2 REST, gRPC "
        "| p99 ms: `/invocations`, V2 REST, gRPC | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lockgate-protocol-bench-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models(selected)
        register(models, work, tracking)
        for model in models:
            split_file = work / f"{model.name}-1.json"
            split_file.write_bytes(split_body(model.frame, 1))
            v2_file, v2_matrix_file, grpc_file = write_protocol_bodies(model, work)
            measured: dict[str, list[dict[str, Any]]] = {}
            for run in range(rounds):
                server = start("lockgate", model.name, work, tracking, run)
                try:
                    infer = f"/v2/models/{model.name}/infer"
                    grpc_url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"
                    log = work / "h2load.log"
                    wrk(server.url, split_file, 16, 3)  # warm-up: the background work after ready has settled
                    invocations = partial(wrk, server.url, split_file, 16, seconds)
                    v2_wrk = partial(wrk, server.url, v2_file, 16, seconds, infer)
                    h2_invocations = partial(h2load, server.url + "/invocations", split_file, 16, seconds,
                                             grpc=False, log=log)  # fmt: skip
                    h2_rest = partial(h2load, server.url + infer, v2_file, 16, seconds, grpc=False, log=log)
                    h2_grpc = partial(h2load, grpc_url, grpc_file, 16, seconds, grpc=True, log=log)
                    comparisons = {"wrk_v2": (invocations, v2_wrk), "h2_v2": (h2_invocations, h2_rest),
                                   "h2_grpc": (h2_rest, h2_grpc)}  # fmt: skip
                    if v2_matrix_file is not None:
                        matrix = partial(wrk, server.url, v2_matrix_file, 16, seconds, infer)
                        comparisons["wrk_v2_matrix"] = (invocations, matrix)
                    for label, (load_a, load_b) in comparisons.items():
                        result = paired(load_a, load_b, pairs)
                        measured.setdefault(label, []).append(result)
                        print(f"  {model.name} start {run + 1} {label:<14} ratio {result['ratio']:.3f} "
                              f"{result['ratios']} errors {result['errors']}")  # fmt: skip
                finally:
                    stop_group(server.proc)
            merged = {label: _merge_paired(runs) for label, runs in measured.items()}
            results[model.name] = merged
            errors = sum(m["errors"] for m in merged.values())

            wrk_v2, grpc_vs_rest = merged["wrk_v2"], merged["h2_grpc"]
            cells = [_ratio_cell(merged, label) for label in ("wrk_v2", "wrk_v2_matrix", "h2_v2", "h2_grpc")]
            lines.append(
                f"| {model.name} | {' | '.join(cells)} "
                f"| {wrk_v2['a']['req_s']:,.0f}, {wrk_v2['b']['req_s']:,.0f}, {grpc_vs_rest['b']['req_s']:,.0f} "
                f"| {wrk_v2['a']['p99_ms']:.1f}, {wrk_v2['b']['p99_ms']:.1f}, {grpc_vs_rest['b']['p99_ms']:.1f} "
                f"| {errors} |"
            )
    table = "\n".join(lines)
    print("\n" + table)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "protocols.md").write_text(table + "\n")
    (out_dir / "protocols.json").write_text(json.dumps(results, indent=2))


# The V2 issue's targets: V2 REST within 15 % of /invocations, gRPC at least as fast as REST.
_PROTOCOL_TARGETS = {"wrk_v2": 0.85, "wrk_v2_matrix": 0.85, "h2_v2": 0.85, "h2_grpc": 1.0}


def _ratio_cell(merged: dict[str, Any], label: str) -> str:
    """The median ratio (in bold when it meets its target) and the range of its pairs."""
    if label not in merged:
        return "(typed: no matrix form)"
    ratios = merged[label]["ratios"]
    ratio = merged[label]["ratio"]
    shown = f"**{ratio:.2f}**" if ratio >= _PROTOCOL_TARGETS[label] else f"{ratio:.2f}"
    return f"{shown} ({min(ratios):.2f}-{max(ratios):.2f})"


def _merge_paired(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several server starts' paired results as one: the median over all their pairs."""
    ratios = [r for run in runs for r in run["ratios"]]
    return {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "a": {k: statistics.median(run["a"][k] for run in runs) for k in ("req_s", "p99_ms")},
        "b": {k: statistics.median(run["b"][k] for run in runs) for k in ("req_s", "p99_ms")},
        "errors": sum(run["errors"] for run in runs),
    }


def startup_only(selected: list[str], rounds: int, out_dir: Path) -> None:
    """Start-to-ready of MLflow, a cold lockgate (empty cache) and a warm lockgate restart (the
    cache of an earlier start: the local pin serves before the registry is asked), alternated."""
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="lockgate-startup-bench-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        models = build_models(selected)
        register(models, work, tracking)
        for model in models:
            warm_cache = work / f"warm-{model.name}"
            stop_group(start("lockgate", model.name, work, tracking, -1, cache=warm_cache).proc)  # primes it
            times: dict[str, list[float]] = {"mlflow": [], "lockgate cold": [], "lockgate warm": []}
            for run in range(rounds):
                for label, series in times.items():
                    kind = "mlflow" if label == "mlflow" else "lockgate"
                    cache = warm_cache if label == "lockgate warm" else None
                    server = start(kind, model.name, work, tracking, run, cache=cache)
                    stop_group(server.proc)
                    series.append(server.start_seconds)
                    print(f"  {model.name} round {run + 1} {label:<14} ready in {server.start_seconds:.2f} s")
            results[model.name] = times
    lines = [
        "| model | MLflow s | lockgate cold s (ratio) | lockgate warm restart s (ratio) |",
        "|---|---|---|---|",
    ]
    for name, times in results.items():
        mlflow_s = statistics.median(times["mlflow"])
        cold, warm = statistics.median(times["lockgate cold"]), statistics.median(times["lockgate warm"])
        lines.append(
            f"| {name} | {mlflow_s:.2f} | {cold:.2f} ({cold / mlflow_s:.2f}) | {warm:.2f} ({warm / mlflow_s:.2f}) |"
        )
    table = "\n".join(lines)
    print(f"\nstart to ready, median of {rounds} alternating rounds\n{table}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "startup.md").write_text(f"# start to ready, median of {rounds} rounds\n\n{table}\n")
    (out_dir / "startup.json").write_text(json.dumps(results, indent=2))


def summarize(
    model: BenchModel, tallies: dict[str, Tally], reference: dict[str, float], agreement: str, path: dict[str, Any]
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for label, *_ in LOADS:
        a, b = tallies["mlflow"].loads[label], tallies["lockgate"].loads[label]
        rows[label] = {
            kind: {
                "req_s": mean_of(results, "req_s"),
                "rows_s": mean_of(results, "rows_s"),
                "p50_ms": mean_of(results, "p50_ms"),
                "p99_ms": mean_of(results, "p99_ms"),
                "errors": int(sum(r["errors"] for r in results)),
            }
            for kind, results in (("mlflow", a), ("lockgate", b))
        }
    protocols = {
        label: {
            "req_s": mean_of(runs, "req_s"),
            "p99_ms": mean_of(runs, "p99_ms"),
            "errors": sum(r["errors"] for r in runs),
        }
        for label in PROTOCOL_LOADS
        if (runs := tallies["lockgate"].loads.get(label))
    }
    return {
        "protocols": protocols,
        "description": model.description,
        "serving_path": path.get("name"),
        "serving_reason": path.get("reason"),
        "check": path.get("check"),
        "batching": path.get("batching"),
        "agreement": agreement,
        "in_process": reference,
        "start_seconds": {k: statistics.mean(t.start) for k, t in tallies.items()},
        "settled_seconds": statistics.mean(tallies["lockgate"].settled),
        "rss_mb": {k: statistics.mean(t.rss) / 1e6 for k, t in tallies.items()},
        "loads": rows,
    }


def print_report(report: dict[str, Any], out_dir: Path) -> None:
    lines = [
        f"wrk, {report['seconds']:g} s per load, {report['rounds']} alternating rounds (A = mlflow models serve, "
        "B = lockgate serve); figures are means over rounds",
        "",
    ]
    for model in report["models"].values():
        lines += [
            f"### {model['description']}",
            "",
            f"lockgate serving path: **{model['serving_path']}**"
            + (f" ({model['serving_reason']})" if model["serving_reason"] else "")
            + f"; predictions vs MLflow: {model['agreement']}",
            "",
        ]
        lines.append("| load | MLflow req/s | lockgate req/s | ratio | MLflow rows/s | lockgate rows/s | "
                     "MLflow p50 / p99 ms | lockgate p50 / p99 ms | p99 ratio | errors |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for label, kinds in model["loads"].items():
            a, b = kinds["mlflow"], kinds["lockgate"]
            lines.append(
                f"| {label} | {a['req_s']:,.0f} | {b['req_s']:,.0f} | **{b['req_s'] / a['req_s']:.1f}x** "
                f"| {a['rows_s']:,.0f} | {b['rows_s']:,.0f} | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} "
                f"| {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {b['p99_ms'] / a['p99_ms']:.3f} "
                f"| {a['errors']} / {b['errors']} |"
            )
        ref = model["in_process"]
        start, rss = model["start_seconds"], model["rss_mb"]
        one_conn = model["loads"]["1 row, 1 conn"]["lockgate"]
        engine = "engine_1_ms" in ref
        fast = "tree engine" if engine else "ONNX"
        fast_1 = ref.get("engine_1_ms" if engine else "onnx_1_ms", float("nan"))
        fast_1024 = ref.get("engine_1024_ms" if engine else "onnx_1024_ms", float("nan"))
        predict_1 = ref["mlflow_pyfunc_1_ms"] if np.isnan(fast_1) else fast_1
        native_note = (
            f"; native pipeline {ref['native_1_ms']:.3f} ms (1 row), {ref['native_1024_ms']:.2f} ms (1,024 rows)"
            if "native_1_ms" in ref
            else ""
        )
        if "library_1_ms" in ref:
            native_note = (
                f"; the library's own lean predict {ref['library_1_ms']:.3f} ms (1 row), "
                f"{ref['library_1024_ms']:.2f} ms (1,024 rows)"
            )
        lines += [
            "",
            f"- start to ready: MLflow {start['mlflow']:.2f} s, lockgate {start['lockgate']:.2f} s "
            f"(cold cache), ratio **{start['lockgate'] / start['mlflow']:.2f}**; lockgate's serving path settled "
            f"(background ONNX conversion done) at {model['settled_seconds']:.2f} s",
            f"- resident memory (process tree): MLflow {rss['mlflow']:.0f} MB, lockgate {rss['lockgate']:.0f} MB",
            f"- in-process predict, 1 row: MLflow pyfunc {ref['mlflow_pyfunc_1_ms']:.3f} ms, "
            f"{fast} {fast_1:.3f} ms; 1,024 rows: pyfunc "
            f"{ref['mlflow_pyfunc_1024_ms']:.2f} ms, {fast} {fast_1024:.2f} ms{native_note}",
            f"- gateway overhead at 1 client: p50 {one_conn['p50_ms']:.3f} ms - predict {predict_1:.3f} ms = "
            f"**{one_conn['p50_ms'] - predict_1:.3f} ms**",
        ]
        check = model.get("check") or {}
        if check.get("engine"):
            large = (
                f", {check['large_batches']} from {check['large_from_rows']} rows" if check.get("large_batches") else ""
            )
            lines.append(
                f"- engine chosen at deploy: {check['engine']}{large}; exact on {check['rows_checked']:,} rows "
                f"({check['threshold_rows']:,} at split thresholds)"
            )
        protocols = model.get("protocols") or {}
        if V2_LOAD in protocols:
            v2, inv = protocols[V2_LOAD], model["loads"]["1 row, 16 conns"]["lockgate"]
            lines.append(
                f"- wrk, V2 REST, 1 row, 16 conns: {v2['req_s']:,.0f} req/s, p99 {v2['p99_ms']:.2f} ms, errors "
                f"{v2['errors']}; /invocations {inv['req_s']:,.0f} req/s, p99 {inv['p99_ms']:.2f} ms: "
                f"V2/invocations **{v2['req_s'] / inv['req_s']:.2f}**"
            )
        if V2_MATRIX_LOAD in protocols:
            v2, inv = protocols[V2_MATRIX_LOAD], model["loads"]["1 row, 16 conns"]["lockgate"]
            lines.append(
                f"- wrk, V2 REST with one [1, columns] matrix input: {v2['req_s']:,.0f} req/s, p99 "
                f"{v2['p99_ms']:.2f} ms, errors {v2['errors']}: V2/invocations **{v2['req_s'] / inv['req_s']:.2f}**"
            )
        if {H2_INVOCATIONS, H2_V2_REST, H2_GRPC} <= set(protocols):
            inv, rest, grpc_ = protocols[H2_INVOCATIONS], protocols[H2_V2_REST], protocols[H2_GRPC]
            lines.append(
                f"- h2load, 1 row, 16 conns: /invocations {inv['req_s']:,.0f} req/s (p99 {inv['p99_ms']:.2f} ms), "
                f"V2 REST {rest['req_s']:,.0f} (p99 {rest['p99_ms']:.2f} ms), V2 gRPC {grpc_['req_s']:,.0f} "
                f"(p99 {grpc_['p99_ms']:.2f} ms); gRPC/REST **{grpc_['req_s'] / rest['req_s']:.2f}**, "
                f"errors {inv['errors']} / {rest['errors']} / {grpc_['errors']}"
            )
        if "onnx_1024_ms" in ref:
            limit = 1024 / (ref["onnx_1024_ms"] / 1000)
            got = model["loads"]["1024 rows, 16 conns"]["lockgate"]["rows_s"]
            lines.append(
                f"- 1,024-row limit (one predict stream, in-process ONNX): {limit:,.0f} rows/s; lockgate reaches "
                f"{got:,.0f} ({limit / got:.2f}x below the limit)"
            )
        lines.append("")
    text = "\n".join(lines)
    print("\n" + text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serving.md").write_text(text)
    (out_dir / "serving.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
