"""Pins that every process sharing a cache directory can see.

Two gateways on one cache volume (the ReadWriteMany PVC of ``docs/kubernetes.md``, or two
processes on one host) each pin the versions they serve, but an in-process pin is invisible to
the other: under its byte bound, one would evict the other's live version. So a pinned version
also holds a lease file, ``leases/<key>/<holder>``, that its process keeps fresh:

- a heartbeat thread touches every lease this process holds each quarter of the lifetime;
- a lease is live while it was touched within the lifetime (120 s), so a process on another
  node that died stops protecting its versions two minutes later;
- on this host, a lease whose process is gone is stale at once (its pid no longer exists).

Eviction skips every version with a live lease of another holder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

LEASE_SECONDS = 120.0


class CacheLeases:
    def __init__(self, directory: Path, *, lifetime: float = LEASE_SECONDS) -> None:
        self._directory = directory / "leases"
        self._directory.mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname()
        self.holder = f"{self._host}~{os.getpid()}~{uuid.uuid4().hex[:8]}"
        self._lifetime = lifetime
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    def _file(self, key: str) -> Path:
        return self._directory / key / self.holder

    def hold(self, key: str) -> None:
        path = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        with self._lock:
            self._held.add(key)
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="lockgate-cache-leases", daemon=True)
                self._heartbeat.start()

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
        self._file(key).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another holder's lease is still in it
            self._file(key).parent.rmdir()

    def held_elsewhere(self, key: str) -> list[str]:
        """The other holders with a live lease on ``key`` (stale leases are removed)."""
        directory = self._directory / key
        if not directory.is_dir():
            return []
        now = time.time()
        live = []
        for lease in directory.iterdir():
            if lease.name == self.holder:
                continue
            try:
                fresh = now - lease.stat().st_mtime < self._lifetime
            except FileNotFoundError:
                continue
            if fresh and not self._dead_here(lease.name):
                live.append(lease.name)
            else:
                lease.unlink(missing_ok=True)
        return live

    def _dead_here(self, holder: str) -> bool:
        host, _, rest = holder.partition("~")
        pid_text = rest.partition("~")[0]
        if host != self._host or not pid_text.isdigit():
            return False  # another node: only the heartbeat can tell
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    def _beat(self) -> None:
        while True:
            time.sleep(self._lifetime / 4)
            with self._lock:
                held = list(self._held)
            for key in held:
                path = self._file(key)
                try:
                    os.utime(path)
                except FileNotFoundError:
                    with contextlib.suppress(OSError):  # swept by someone who thought us dead: back
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.touch()
