"""What hostile requests cost, side by side, in one run, on the same registered models.

Three parts (``--only`` picks one):

- ``invocations``: lockgate and `mlflow models serve` each sent the same hostile MLflow bodies
  (column bombs, deep nesting, huge integers) while a probe keeps sending a normal 1-row
  request: each body's status and time, the probe's worst latency, RSS before and after.
- ``v2``: the V2 trust cases (the security review's). A probe sends valid 1-row V2 requests
  while two clients loop the 30 KB nested body, while six send the 683 KB huge shape (REST, then
  gRPC), and while two send a 64 MiB header; reports the probe's p99 (the goal: under 100 ms),
  each hostile body's status and seconds, and RSS before and after the header case (the goal:
  under 20 MiB of growth). `mlflow models serve` gets the cases it has a route for (the header,
  on /invocations); it has no V2 routes.
- ``header-cost``: what the request-head bound costs. lockgate's app behind uvicorn's own
  httptools protocol against the bounded one, 1-row /invocations and V2 REST with wrk, in
  back-to-back ABBA pairs; the ratio's median (the goal: within 3 %).

    .venv/bin/python bench/hostile_bench.py [--only v2] [--seconds 8] [--pairs 6]

Bounded: every request has a timeout, every loop a duration, and every server (127.0.0.1 only)
is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import mlflow

from tests.registry_helpers import Registry, weights
from tests.servers import Server, free_port, start_lockgate, start_mlflow_models_serve, stop_group, wait_http
from tests.test_v2_hostile import (
    COLUMNS,
    INFER,
    ROW,
    VALID,
    huge_shape_body,
    nested_body,
    register_iris,
    request_head,
    send_head,
)

PROBE = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}}).encode()
JSON = {"Content-Type": "application/json"}


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (mlflow serves from a child)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total / 1024


def hostile_bodies(columns: int, bombs: int) -> list[tuple[str, bytes]]:
    names = [f"c{i}" for i in range(columns)]
    bomb = json.dumps({"dataframe_split": {"columns": names, "data": [[0] * columns]}}).encode()
    deep = b'{"dataframe_split": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge = b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[' + b"9" * 5000 + b", 1, 1]]}}"
    return [*[(f"column bomb {i + 1} ({len(bomb) / 1e6:.0f} MB)", bomb) for i in range(bombs)],
            ("JSON nested 100,000 deep", deep), ("5,000-digit integer", huge)]  # fmt: skip


def attack(url: str, label: str, body: bytes) -> dict[str, object]:
    worst = 0.0
    stop = threading.Event()

    def probe() -> None:
        nonlocal worst
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.post(f"{url}/invocations", content=PROBE, headers=JSON)
                worst = max(worst, time.perf_counter() - started)
                time.sleep(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        status: object = httpx.post(f"{url}/invocations", content=body, headers=JSON, timeout=120).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(timeout=130)
    return {"request": label, "status": status, "seconds": seconds, "probe_worst_ms": worst * 1000}


def run(name: str, server: Server, pid: int, bodies: list[tuple[str, bytes]]) -> None:
    httpx.post(f"{server.url}/invocations", content=PROBE, headers=JSON, timeout=60)  # warm
    before = rss_mib(pid)
    rows = [attack(server.url, label, body) for label, body in bodies]
    time.sleep(1.0)
    after = rss_mib(pid)
    print(f"\n{name}: RSS {before:.0f} MiB before, {after:.0f} MiB after ({after - before:+.0f} MiB)")
    print(f"  {'request':<28} {'status':>8} {'seconds':>8} {'probe worst':>12}")
    for row in rows:
        print(f"  {row['request']:<28} {row['status']!s:>8} {row['seconds']:>8.2f} {row['probe_worst_ms']:>10.1f}ms")


def invocations_part(args: argparse.Namespace) -> None:
    bodies = hostile_bodies(args.columns, args.bombs)
    with tempfile.TemporaryDirectory(prefix="lockgate-hostile-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        os.environ["LOCKGATE_STORE"] = str(work / "store")
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)
        registry = Registry(tracking, work / "store", work)
        registry.log_weights_model("hostile", weights(1, rows=64, cols=4))
        lockgate = start_lockgate(work, registry.gateway_env(), "models:/hostile/1", ready_path="/ready")
        try:
            run("lockgate", lockgate, lockgate.proc.pid, bodies)
        finally:
            lockgate.stop()
        reference = start_mlflow_models_serve(work, tracking, "models:/hostile/1")
        try:
            run("mlflow models serve", reference, reference.proc.pid, bodies)
        finally:
            stop_group(reference.proc)


# -- the V2 trust cases -------------------------------------------------------------------------

MLFLOW_PROBE = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}).encode()


class Probe:
    """Valid 1-row requests, one after another, while an attack runs: their latencies."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url, self.body = url, body
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.post(self.url, content=self.body, headers=JSON).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - started)
                self.failures += not ok
                time.sleep(0.01)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=130)

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")


class Clients:
    """Attacking clients, each a forked process of its own, so their work (building and sending
    bodies) does not share the probe's interpreter lock: the probe measures the server alone.
    Each calls ``send()`` until ``seconds`` pass, or ``times`` times; (status, seconds) per call."""

    def __init__(self, clients: int, send: Any, *, seconds: float | None = None, times: int | None = None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._queue: Any = context.Queue()
        self._processes = [
            context.Process(target=self._client, args=(send, seconds, times), daemon=True) for _ in range(clients)
        ]
        for process in self._processes:
            process.start()

    def _client(self, send: Any, seconds: float | None, times: int | None) -> None:
        results: list[tuple[object, float]] = []
        deadline = time.monotonic() + (seconds or 0.0)
        while (len(results) < times) if times is not None else (time.monotonic() < deadline):
            started = time.perf_counter()
            status = send()
            results.append((status, time.perf_counter() - started))
        self._queue.put(results)

    def wait(self) -> list[tuple[object, float]]:
        results: list[tuple[object, float]] = []
        for _ in self._processes:
            results.extend(self._queue.get(timeout=900))
        for process in self._processes:
            process.join(timeout=60)
        return results


def rest_sender(url: str, body: bytes, **headers: str) -> Any:
    # Header values as bytes (latin-1): a hostile client sends any byte, httpx encodes str as ASCII.
    raw_headers = {k.encode(): v.encode("latin-1") for k, v in {**JSON, **headers}.items()}

    def send() -> object:
        try:
            return httpx.post(url, content=body, headers=raw_headers, timeout=120).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    return send


def grpc_sender(address: str, raw: bytes) -> Any:
    """A sender per client thread, each with its own channel (a connection, as a client keeps)."""
    import grpc

    local = threading.local()

    def send() -> object:
        if not hasattr(local, "call"):
            local.channel = grpc.insecure_channel(address)
            local.call = local.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            local.call(raw, timeout=120)
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"

    return send


def head_sender(server: Server, head: bytes) -> Any:
    def send() -> object:
        answer = send_head(server, head)
        return answer.split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "no answer"

    return send


def huge_grpc_message() -> bytes:
    import tritonclient.grpc.service_pb2 as pb

    message = pb.ModelInferRequest(model_name="iris")
    tensor = message.inputs.add(name=COLUMNS[0], datatype="FP64", shape=[2**63 - 1] * 35_000)
    tensor.contents.fp64_contents.append(1.0)
    return bytes(message.SerializeToString())


def summary(results: list[tuple[object, float]]) -> str:
    results = [(status, seconds) for status, seconds in results if status is not None]  # the idle "attack"
    statuses = sorted({str(status) for status, _ in results})
    seconds = sorted(duration for _, duration in results)
    if not seconds:
        return "no answer"
    return (f"{len(results)} sent, status {'/'.join(statuses)}, {seconds[len(seconds) // 2]:.3f} s median, "
            f"{seconds[-1]:.3f} s max per body")  # fmt: skip


def attack_row(name: str, probe_url: str, probe_body: bytes, attack: Any) -> None:
    clients = attack()  # started first: forked before the probe's thread exists
    with Probe(probe_url, probe_body) as probe:
        results = clients.wait()
    print(f"  {name:<44} probe p99 {probe.p99_ms():>8.1f} ms ({len(probe.latencies)} probes, "
          f"{probe.failures} failed); {summary(results)}")  # fmt: skip


def header_row(name: str, server: Server, pid: int, probe_url: str, probe_body: bytes) -> None:
    """Two clients each send a 64 MiB header three times, to the probe's own route; RSS before,
    at its peak during the attack (sampled every 20 ms), and after."""
    path = probe_url.removeprefix(server.url)
    head = request_head(64 << 20, path, probe_body)
    before = rss_mib(pid)
    peak, sampling = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, rss_mib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attack_row(name, probe_url, probe_body, lambda: Clients(2, head_sender(server, head), times=3))
    sampling.set()
    sampler.join(timeout=10)
    time.sleep(1.0)
    after = rss_mib(pid)
    print(f"  {'':<44} RSS {before:.0f} MiB before, peak {peak:.0f} MiB ({peak - before:+.1f} MiB), "
          f"{after:.0f} MiB after ({after - before:+.1f} MiB)")  # fmt: skip


def v2_part(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="lockgate-hostile-v2-") as tmp:
        work = Path(tmp)
        registry = register_iris(work)
        grpc_port = free_port()
        lockgate = start_lockgate(work, registry.gateway_env(), "models:/iris/1", "--grpc-port", str(grpc_port),
                                  ready_path="/ready")  # fmt: skip
        probe_url, address = lockgate.url + INFER, f"127.0.0.1:{grpc_port}"
        try:
            print(f"\nlockgate (V2 probe: 1-row POST {INFER}), {seconds:g} s per attack:")
            attack_row("no attack", probe_url, VALID, lambda: Clients(1, lambda: time.sleep(seconds), times=1))
            nested = nested_body()
            attack_row(f"2 clients loop the nested body ({len(nested) / 1e3:.0f} KB)", probe_url, VALID,
                       lambda: Clients(2, rest_sender(probe_url, nested), seconds=seconds))  # fmt: skip
            huge = huge_shape_body()
            attack_row(f"6 clients send the huge shape, REST ({len(huge) / 1e3:.0f} KB)", probe_url, VALID,
                       lambda: Clients(6, rest_sender(probe_url, huge), seconds=seconds))  # fmt: skip
            raw = huge_grpc_message()
            attack_row(f"6 clients send the huge shape, gRPC ({len(raw) / 1e3:.0f} KB)", probe_url, VALID,
                       lambda: Clients(6, grpc_sender(address, raw), seconds=seconds))  # fmt: skip
            header_row("2 clients send a 64 MiB header, 3 times", lockgate, lockgate.proc.pid, probe_url, VALID)
            low_cases(lockgate, address)
        finally:
            lockgate.stop()
        reference = start_mlflow_models_serve(
            work, registry.tracking_uri, "models:/iris/1", {"LOCKGATE_STORE": str(registry.store_root)}
        )
        try:
            print("\nmlflow models serve (probe: 1-row POST /invocations; it has no V2 routes):")
            mlflow_url = reference.url + "/invocations"
            attack_row("no attack", mlflow_url, MLFLOW_PROBE, lambda: Clients(1, lambda: time.sleep(seconds), times=1))
            status = httpx.post(reference.url + INFER, content=VALID, headers=JSON, timeout=60).status_code
            print(f"  {'a V2 request':<44} status {status} (no route)")
            header_row(
                "2 clients send a 64 MiB header, 3 times", reference, reference.proc.pid, mlflow_url, MLFLOW_PROBE
            )
        finally:
            stop_group(reference.proc)


def low_cases(server: Server, address: str) -> None:
    """The review's low-severity cases: what each answers now."""
    body = json.loads(VALID)
    body["outputs"] = [{"name": "predict", "parameters": [1]}]
    cases = {
        "Inference-Header-Content-Length: ² (latin-1)": rest_sender(server.url + INFER, VALID,
                                                                   **{"Inference-Header-Content-Length": "\xb2"}),
        "Inference-Header-Content-Length of 5,000 digits": rest_sender(
            server.url + INFER, VALID, **{"Inference-Header-Content-Length": "1" * 5000}),
        "shape whose count has ~5,700 digits (REST)": rest_sender(server.url + INFER, huge_shape_body(300)),
        "an output whose parameters is a list": rest_sender(server.url + INFER, json.dumps(body).encode()),
        "gRPC: contents and raw_input_contents": grpc_sender(address, both_contents()),
        "gRPC: bytes that are not protobuf": grpc_sender(address, b"\xff\xff\xff"),
    }  # fmt: skip
    for name, send in cases.items():  # each in a child: gRPC stays out of this (forking) process
        ((status, seconds),) = Clients(1, send, times=1).wait()
        print(f"  {name:<44} status {status} in {seconds:.3f} s")
    started = time.perf_counter()
    deploy = httpx.post(f"{server.url}/admin/endpoints", json={"name": "long", "model_uri": "/" + "d" * 300},
                        timeout=120)  # fmt: skip
    print(f"  {'admin deploy of a 300-byte path component':<44} status {deploy.status_code} in "
          f"{time.perf_counter() - started:.3f} s")  # fmt: skip


def both_contents() -> bytes:
    import struct

    import tritonclient.grpc.service_pb2 as pb

    message = pb.ModelInferRequest(model_name="iris")
    for column, value in zip(COLUMNS, ROW, strict=True):
        message.inputs.add(name=column, datatype="FP64", shape=[1]).contents.fp64_contents.append(value)
        message.raw_input_contents.append(struct.pack("<d", value))
    return bytes(message.SerializeToString())


# -- what the head bound costs --------------------------------------------------------------------


def serve_child(protocol: str, port: int, uri: str) -> None:
    """lockgate's app as `lockgate serve` runs it, behind uvicorn's httptools protocol ("stock")
    or the bounded one ("bounded"): the two differ in nothing else."""
    import gc

    import uvicorn

    from lockgate.gateway.app import create_app
    from lockgate.gateway.bounded_http import bounded_http_protocol
    from lockgate.gateway.control.endpoint_spec import EndpointSpec
    from lockgate.gateway.settings import Settings

    gc.disable()  # as `lockgate serve` does; the app's lifespan re-enables it
    settings = Settings().model_copy(update={"port": port})
    app = create_app(settings, [EndpointSpec("iris", uri)])
    http: Any = bounded_http_protocol(settings.max_header_bytes) if protocol == "bounded" else "httptools"
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http=http)


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def header_cost_part(seconds: float, pairs: int) -> None:
    """The bounded protocol against uvicorn's own, on the same app: req/s, and the server's CPU per
    request (its ticks over the load's requests), which moves far less than req/s on a shared
    machine. Each figure is the median of ABBA pairs' ratios (bounded / stock)."""
    import shutil
    import statistics
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving_bench import wait_settled, wrk

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="lockgate-head-cost-") as tmp:
        work = Path(tmp)
        registry = register_iris(work)
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for protocol in ("stock", "bounded"):
                port = free_port()
                env = {**os.environ, **registry.gateway_env(LOCKGATE_CACHE_DIR=str(work / f"cache-{protocol}"))}
                log = open(work / f"{protocol}.log", "wb")  # noqa: SIM115 - the child owns it
                proc = subprocess.Popen([sys.executable, __file__, "--serve-child", protocol, str(port),
                                         "models:/iris/1"], stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
                servers[protocol] = (proc, f"http://127.0.0.1:{port}")
            for proc, url in servers.values():
                wait_http(url + "/ready", timeout=180, proc=proc)
                while httpx.get(url + "/ready", timeout=10).status_code != 200:
                    time.sleep(0.5)
                wait_settled(url, "iris")  # the ONNX graph serves: no background conversion left

            def load(protocol: str, path: str, body_file: Path) -> dict[str, float]:
                proc, url = servers[protocol]
                before = cpu_ticks(proc.pid)
                result = wrk(url, body_file, 16, int(seconds), path)
                result["cpu_us"] = (cpu_ticks(proc.pid) - before) * tick_us / max(result["requests"], 1)
                return result

            print(f"\nthe head bound's cost: 1 row, wrk 16 connections, {seconds:g} s loads, {pairs} ABBA pairs "
                  "(bounded / uvicorn's httptools)")  # fmt: skip
            for path, body in {"/invocations": MLFLOW_PROBE, INFER: VALID}.items():
                body_file = work / f"body-{len(body)}.json"
                body_file.write_bytes(body)
                for protocol in servers:
                    load(protocol, path, body_file)  # warm-up
                runs: dict[str, list[dict[str, float]]] = {"stock": [], "bounded": []}
                for index in range(pairs):
                    order = ("stock", "bounded") if index % 2 == 0 else ("bounded", "stock")
                    for protocol in order:
                        runs[protocol].append(load(protocol, path, body_file))
                pairs_of = list(zip(runs["stock"], runs["bounded"], strict=True))
                throughput = statistics.median(b["req_s"] / a["req_s"] for a, b in pairs_of)
                cpu = statistics.median(b["cpu_us"] / a["cpu_us"] for a, b in pairs_of)
                med = {p: {k: statistics.median(r[k] for r in rs) for k in ("req_s", "cpu_us", "p99_ms")}
                       for p, rs in runs.items()}  # fmt: skip
                errors = sum(int(r["errors"]) for rs in runs.values() for r in rs)
                print(f"  {path:<22} req/s ratio {throughput:.3f} "
                      f"(pairs {[round(b['req_s'] / a['req_s'], 3) for a, b in pairs_of]}); "
                      f"CPU per request ratio {cpu:.3f} "
                      f"(pairs {[round(b['cpu_us'] / a['cpu_us'], 3) for a, b in pairs_of]})")  # fmt: skip
                print(f"  {'':<22} stock {med['stock']['req_s']:,.0f} req/s, {med['stock']['cpu_us']:.0f} us CPU, "
                      f"p99 {med['stock']['p99_ms']:.2f} ms; bounded {med['bounded']['req_s']:,.0f} req/s, "
                      f"{med['bounded']['cpu_us']:.0f} us CPU, p99 {med['bounded']['p99_ms']:.2f} ms; "
                      f"errors {errors}")  # fmt: skip
        finally:
            for proc, _ in servers.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["invocations", "v2", "header-cost"], help="run one part")
    parser.add_argument("--bombs", type=int, default=2)
    parser.add_argument("--columns", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each attack and load (default 8)")
    parser.add_argument("--pairs", type=int, default=6, help="ABBA pairs per header-cost ratio (default 6)")
    parser.add_argument("--serve-child", nargs=3, metavar=("PROTOCOL", "PORT", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_child:
        protocol, port, uri = args.serve_child
        serve_child(protocol, int(port), uri)
        return
    if args.only in (None, "invocations"):
        invocations_part(args)
    if args.only in (None, "v2"):
        v2_part(args.seconds)
    if args.only in (None, "header-cost"):
        header_cost_part(args.seconds, args.pairs)


if __name__ == "__main__":
    main()
