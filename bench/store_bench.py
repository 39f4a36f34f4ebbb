"""Store throughput: ingest and read MB/s for a 256 MiB file, on a local directory and on a
real SeaweedFS S3 server, in one run.

    .venv/bin/python bench/store_bench.py [--size-mib 256] [--repeat 3] [--no-s3]

"storage ceiling" is what the backend itself accepts for the same bytes (64 MiB puts, two in
flight, no chunking): ingest cannot beat it. Each figure is the median of ``--repeat`` runs;
every run ingests into a fresh store so the first push really stores every byte. "read"
streams the file through full verification into memory and discards it; "export" also writes
it to disk and checks its BLAKE3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockgate.store import Store
from lockgate.store.pack import MAX_PACK_BYTES
from tests.servers import SeaweedFS


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_backend(
    name: str, open_root: Callable[[], Store], source: Path, repeat: int, workdir: Path
) -> dict[str, float]:
    size_mb = source.stat().st_size / 1e6
    ingest, reingest, read, export, ceiling = [], [], [], [], []
    for _ in range(repeat):
        store = open_root()
        ceiling.append(timed(lambda s=store: raw_puts(s, source)))
        ingest.append(timed(lambda s=store: s.push(source, "bench", "main", "weights.bin")))
        reingest.append(timed(lambda s=store: s.push(source, "bench", "main", "copy.bin")))
        commit = store.resolve("bench", "main")
        fresh = Store.open(store.root, s3_endpoint_url=getattr(store.backend, "endpoint_url", None))

        def drain(s: Store = fresh, c: str = commit) -> None:
            for _piece in s.stream_file(c, "weights.bin"):
                pass

        read.append(timed(drain))
        target = workdir / f"out-{uuid.uuid4().hex}.bin"
        export.append(timed(lambda s=fresh, c=commit, t=target: s.export_file(c, "weights.bin", t)))
        target.unlink()
    result = {
        "storage ceiling MB/s": size_mb / statistics.median(ceiling),
        "ingest MB/s": size_mb / statistics.median(ingest),
        "re-ingest (all dedup) MB/s": size_mb / statistics.median(reingest),
        "read MB/s": size_mb / statistics.median(read),
        "export to disk MB/s": size_mb / statistics.median(export),
    }
    print(f"\n{name}  ({size_mb:.0f} MB, median of {repeat})")
    for key, value in result.items():
        print(f"  {key:<28} {value:8.0f}")
    print(f"  {'ingest / storage ceiling':<28} {result['ingest MB/s'] / result['storage ceiling MB/s']:8.2f}")
    return result


def raw_puts(store: Store, source: Path) -> None:
    """What the backend itself accepts for the same bytes: the file cut into 64 MiB values (a
    pack's size) written with the store's own ``put`` (a directory: temporary file, fsync,
    rename; S3: one PUT each), two in flight as ingest keeps them, with no chunking at all."""
    data = memoryview(source.read_bytes())
    pieces = [data[i : i + MAX_PACK_BYTES] for i in range(0, len(data), MAX_PACK_BYTES)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda item: store.backend.put(f"bench-ceiling/{item[0]}", item[1]), enumerate(pieces)))
    for index in range(len(pieces)):
        store.backend.delete(f"bench-ceiling/{index}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as tmp:
        workdir = Path(tmp)
        source = workdir / "weights.bin"
        # Random bytes: the worst case for compression and dedup, so this measures raw speed.
        with open(source, "wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(1024 * 1024))

        counter = iter(range(1_000_000))
        bench_backend(
            "local directory",
            lambda: Store.open(str(workdir / f"store-{next(counter)}"), create=True),
            source,
            args.repeat,
            workdir,
        )
        if args.no_s3:
            return
        server = SeaweedFS.start(workdir / "seaweedfs")
        try:
            os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
            server.client().create_bucket(Bucket="lockgate-bench")
            bench_backend(
                f"SeaweedFS S3 at {server.endpoint}",
                lambda: Store.open(
                    f"s3://lockgate-bench/run-{next(counter)}", create=True, s3_endpoint_url=server.endpoint
                ),
                source,
                args.repeat,
                workdir,
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
