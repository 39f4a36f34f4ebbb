"""A real Docker engine for the image test, started and stopped by this process.

This sandbox has no Docker daemon and no registry access, so the test:

1. starts Debian's ``dockerd`` (package docker.io) on its own data root, exec root and socket,
   with ``--iptables=false --bridge=none`` (no netfilter here; containers use host networking
   and bind 127.0.0.1 only);
2. makes the ``python:3.11-slim`` base image itself: ``debootstrap`` of Debian bookworm
   (whose python3 is 3.11) with python3-venv, imported with ``docker import`` under that tag.
   The host's CA bundle goes into the image so pip can reach PyPI through this network's
   TLS proxy. The rootfs tarball is cached under ``~/.cache/lockgate`` between runs.

The Dockerfile itself is unchanged: on a normal machine ``python:3.11-slim`` comes from Docker Hub.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASE_TAG = "python:3.11-slim"
SUITE = "bookworm"
ROOTFS_CACHE = Path(os.environ.get("LOCKGATE_DOCKER_CACHE", Path.home() / ".cache" / "lockgate"))
ROOTFS_TAR = ROOTFS_CACHE / f"debootstrap-{SUITE}-python3.tar"


def docker_client() -> str:
    # Debian's client matches Debian's daemon; a newer client on PATH also negotiates down.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


@dataclass
class DockerDaemon:
    proc: subprocess.Popen[bytes]
    root: Path
    socket: Path
    log_path: Path

    @classmethod
    def start(cls) -> DockerDaemon:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd is missing: `make docker-deps` installs Debian's docker.io")
        # A short path: unix socket paths are limited to 107 bytes.
        root = Path(tempfile.mkdtemp(prefix="lg-docker-", dir="/tmp"))
        socket = root / "docker.sock"
        log_path = root / "dockerd.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none",
             f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'dockerd.pid'}",
             f"--host=unix://{socket}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        daemon = cls(proc, root, socket, log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if socket.exists() and daemon.run("info", check=False, capture=True).returncode == 0:
                return daemon
            time.sleep(0.5)
        daemon.stop()
        raise RuntimeError(f"dockerd did not answer within 60 s:\n{log_path.read_text()[-3000:]}")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}

    def run(
        self, *args: str, check: bool = True, capture: bool = False, input: bytes | None = None, timeout: float = 1800
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [docker_client(), *args], env=self.env, check=check, capture_output=capture, input=input, timeout=timeout
        )

    def stop(self) -> None:
        """Stop dockerd by its pid (it stops the containerd it started), then drop its data root."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # dockerd leaves its default network namespace (an nsfs mount) under the exec root; a killed
        # daemon could leave overlay mounts too. Unmount what remains so the root can be removed.
        for mounted in ("exec/netns/default", "exec", "data"):
            subprocess.run(["umount", "-R", str(self.root / mounted)], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def ensure_base_image(self) -> None:
        if self.run("image", "inspect", BASE_TAG, check=False, capture=True).returncode == 0:
            return
        if not ROOTFS_TAR.exists():
            build_rootfs_tar()
        with ROOTFS_TAR.open("rb") as tar:
            subprocess.run(
                [docker_client(), "import",
                 "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--change", "ENV LANG=C.UTF-8",
                 # pip trusts certifi's bundle, not the system's: point it at the one with this network's CA.
                 "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                 "--change", 'CMD ["python3"]', "-", BASE_TAG],
                env=self.env, stdin=tar, check=True, capture_output=True, timeout=600,
            )  # fmt: skip


def build_rootfs_tar() -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: `make docker-deps` installs it")
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lg-rootfs-", dir="/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             SUITE, str(rootfs), debian_mirror()],
            check=True, capture_output=True, timeout=1200,
        )  # fmt: skip
        # What python:3.11-slim offers that minbase lacks: `python`, and this network's CA bundle.
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = ROOTFS_TAR.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.replace(ROOTFS_TAR)
