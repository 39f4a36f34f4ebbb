"""Writers and the garbage collector exclude each other, through leases in the store itself.

A *writer* (a push, a commit, a branch or tag created) holds a writer lease,
``locks/writers/<id>.json``, from before it reads the dedup index until its ref has moved. The
*collector* holds the one collector lease, ``locks/gc.json``, created once (compare-and-swap:
``If-None-Match`` on S3, ``os.link`` locally) from before it marks until its last delete.

The protocol is a two-flag handshake, safe on any store with read-after-write consistency (a
local directory, S3, SeaweedFS): each side first writes its own lease, then looks for the
other's.

- A writer that finds a live collector lease withdraws its own and waits, then tries again.
- The collector, once its lease is written, waits until no live writer lease is left.

So a writer that saw no collector was already visible to the collector when it looked: the
collector waits for that writer to commit before it marks, and every pack the writer reused or
wrote is referenced by then. No writer can dedup against a pack the collector is about to
delete, and no push that started before a sweep loses a byte to it.

Leases expire (a killed holder must not wedge the store forever). A holder refreshes its lease
from a background thread every third of its lifetime, so only a holder that is gone, or stalled
past the lifetime, loses it. Clocks: expiry times are written by the holder's clock and read by
the other side's, so a lifetime is kept far above any plausible skew (minutes, not seconds).

A holder that is *known* gone does not hold its lease for the rest of its lifetime: as git does
with ``gc.pid``, a lease written on this machine (same host name, same boot, same process
namespace) whose process no longer runs (no such pid, or a pid reused by a process that started
later) is abandoned, and counts as expired at once. A SIGKILLed push used to hold a collection
off for its whole lifetime (300 s). Anything that cannot be proved gone (another machine,
another container, a system without ``/proc``) waits for its expiry as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from lockgate.store.backends.base import Backend
from lockgate.store.errors import ObjectNotFoundError, StoreBusyError

LOCKS_PREFIX = "locks/"
COLLECTOR_KEY = "locks/gc.json"
WRITERS_PREFIX = "locks/writers/"
LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    started: float
    expires: float
    process: dict[str, object] | None = None  # where the holder runs (``_process_identity``)

    def live(self, now: float | None = None) -> bool:
        return self.expires > (time.time() if now is None else now) and not self.abandoned()

    def abandoned(self) -> bool:
        """The holder ran on this machine and is gone: its lease need not be waited out."""
        process = self.process
        if not process:
            return False
        here = _process_identity(os.getpid())
        if here is None or any(process.get(k) != here[k] for k in ("host", "boot", "pid_namespace")):
            return False  # another machine or container: its processes cannot be seen from here
        pid = process.get("pid")
        if type(pid) is not int:
            return False
        running = _process_identity(pid)
        return running is None or running["start"] != process.get("start")

    def describe(self) -> str:
        left = self.expires - time.time()
        return f"{self.holder} (expires in {max(left, 0):.0f} s)"

    @classmethod
    def read(cls, key: str, data: bytes) -> Lease:
        try:
            fields = orjson.loads(data)
            process = fields.get("process")
            return cls(key, str(fields["holder"]), float(fields["started"]), float(fields["expires"]),
                       process if type(process) is dict else None)  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return cls(key, "unreadable", 0.0, 0.0)  # damaged: treated as expired


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_identity(pid: int) -> dict[str, object] | None:
    """Host name, boot id, process namespace and start time of ``pid`` on this machine, or None
    when it does not run (or /proc cannot say). The start time tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time, in clock ticks since boot
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except (OSError, IndexError, ValueError):
        return None
    return {"host": socket.gethostname(), "boot": boot, "pid_namespace": namespace, "pid": pid, "start": start}


def _payload(started: float, lifetime: float) -> bytes:
    return orjson.dumps({"holder": _holder(), "started": started, "expires": time.time() + lifetime,
                         "process": _process_identity(os.getpid())})  # fmt: skip


class _Refresher:
    """Re-writes a lease every third of its lifetime until stopped."""

    def __init__(self, write: Callable[[], None], lifetime: float) -> None:
        self._write = write
        self._interval = lifetime / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockgate-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._write()
            except Exception:  # an outage: the next beat tries again, the lease lives until expiry
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def live_writers(backend: Backend, now: float | None = None) -> list[Lease]:
    found = []
    for key in backend.list(WRITERS_PREFIX):
        try:
            lease = Lease.read(key, backend.get(key))
        except ObjectNotFoundError:
            continue  # released while listed
        if lease.live(now):
            found.append(lease)
    return found


def collector_lease(backend: Backend) -> Lease | None:
    current = backend.read_ref(COLLECTOR_KEY)
    return Lease.read(COLLECTOR_KEY, current[0]) if current else None


@contextmanager
def writer_lease(backend: Backend, *, wait: float = 600.0, lifetime: float = LEASE_SECONDS) -> Iterator[None]:
    """Hold a writer lease for the block: waits (up to ``wait`` seconds) while a garbage
    collection holds the store, then raises ``StoreBusyError`` naming it."""
    key = f"{WRITERS_PREFIX}{uuid.uuid4().hex}.json"
    started = time.time()
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        backend.put(key, _payload(started, lifetime))
        collector = collector_lease(backend)
        if collector is None or not collector.live():
            break
        backend.delete(key)  # withdraw, so the collector can finish
        if time.monotonic() + delay > deadline:
            raise StoreBusyError(
                f"store {backend.root!r} is held by a garbage collection ({collector.holder}, until "
                f"{time.strftime('%H:%M:%S', time.gmtime(collector.expires))} UTC); try again when it is done"
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    refresher = _Refresher(lambda: backend.put(key, _payload(started, lifetime)), lifetime)
    try:
        yield
    finally:
        refresher.stop()
        with contextlib.suppress(Exception):  # an outage: the lease expires by itself
            backend.delete(key)


@contextmanager
def collector_hold(
    backend: Backend,
    *,
    wait_for_writers: float = 600.0,
    lifetime: float = LEASE_SECONDS,
    on_wait: Callable[[list[Lease]], None] | None = None,
) -> Iterator[Lease]:
    """Hold the collector lease, once no writer holds one. Raises ``StoreBusyError`` when another
    collection is running, or when writers still hold the store after ``wait_for_writers``."""
    started = time.time()
    current = backend.read_ref(COLLECTOR_KEY)
    if current is not None:
        other = Lease.read(COLLECTOR_KEY, current[0])
        if other.live():
            raise StoreBusyError(f"another garbage collection holds store {backend.root!r} ({other.describe()})")
        # The lease of a collector that died (expired, or abandoned): taken over by compare-and-swap.
        taken = backend.swap_ref(COLLECTOR_KEY, _payload(started, lifetime), current[1])
    else:
        taken = backend.swap_ref(COLLECTOR_KEY, _payload(started, lifetime), None)
    if not taken:
        raise StoreBusyError(f"another garbage collection started on store {backend.root!r} just now")
    refresher = _Refresher(lambda: _rewrite_collector(backend, started, lifetime), lifetime)
    try:
        deadline = time.monotonic() + wait_for_writers
        while writers := live_writers(backend):
            if on_wait is not None:
                on_wait(writers)
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"{len(writers)} writer(s) still hold store {backend.root!r} after {wait_for_writers:g} s "
                    f"(e.g. {writers[0].holder}); nothing was collected"
                )
            time.sleep(0.2)
        yield Lease(COLLECTOR_KEY, _holder(), started, started + lifetime)
    finally:
        refresher.stop()
        with contextlib.suppress(Exception):  # an outage: the lease expires by itself
            backend.delete(COLLECTOR_KEY)


def _rewrite_collector(backend: Backend, started: float, lifetime: float) -> None:
    current = backend.read_ref(COLLECTOR_KEY)
    if current is not None:
        backend.swap_ref(COLLECTOR_KEY, _payload(started, lifetime), current[1])
