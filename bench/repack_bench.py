"""What repacking frees and costs, on a local store and on SeaweedFS (real S3).

    .venv/bin/python bench/repack_bench.py [--live-mib 16] [--dead-mib 48] [--no-s3]

One commit pushes a kept file (--live-mib) and a dropped file (--dead-mib) together, so both land
in one pack. A second branch keeps only the kept file (it dedups into that pack), and the first
branch is deleted: the pack is (dead / (live + dead)) dead but still in use. ``Store.gc`` then
runs once with ``repack_threshold=None`` (what gc did before repacking: the pack stays whole)
and once with the default threshold, on two identical stores; each reports its seconds and the
bytes the store holds after. The kept file is read back through the relocation record and
compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockgate.store import Store
from tests.servers import SeaweedFS

MIB = 1024 * 1024


def stored_bytes(store: Store) -> int:
    return sum(info.size for prefix in ("packs/", "index/", "objects/") for info in store.backend.list_info(prefix))


def scenario(store: Store, kept: bytes, dropped: bytes) -> None:
    store.commit_files("r", "all", [("kept.bin", kept), ("dropped.bin", dropped)])
    store.commit_files("r", "keep", [("kept.bin", kept)])
    store.delete_branch("r", "all", force=True)


def run(name: str, open_store: Callable[[], Store], kept: bytes, dropped: bytes) -> None:
    results = {}
    for label, threshold in (("kept whole (--no-repack)", None), ("repacked (default 0.5)", 0.5)):
        store = open_store()
        scenario(store, kept, dropped)
        before = stored_bytes(store)
        started = time.perf_counter()
        report = store.gc(grace_seconds=0, repack_threshold=threshold)
        seconds = time.perf_counter() - started
        after = stored_bytes(store)
        fresh = Store.open(store.root, s3_endpoint_url=getattr(store.backend, "endpoint_url", None))
        assert fresh.read_file(fresh.resolve("r", "keep"), "kept.bin") == kept
        assert fresh.verify().ok
        results[label] = (before, after, seconds, report.repacked_packs)
    print(f"\n{name}: {len(kept) / MIB:.0f} MiB live + {len(dropped) / MIB:.0f} MiB dead in one pack")
    for label, (before, after, seconds, packs) in results.items():
        print(
            f"  {label:<26} store {before / 1e6:7.1f} MB -> {after / 1e6:7.1f} MB   gc {seconds:5.2f} s"
            f"   packs repacked: {packs}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live-mib", type=int, default=16)
    parser.add_argument("--dead-mib", type=int, default=48)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    kept, dropped = os.urandom(args.live_mib * MIB), os.urandom(args.dead_mib * MIB)
    with tempfile.TemporaryDirectory(prefix="lockgate-repack-bench-") as tmp:
        work = Path(tmp)
        run("local directory", lambda: Store.open(str(work / uuid.uuid4().hex), create=True), kept, dropped)
        if args.no_s3:
            return
        server = SeaweedFS.start(work / "seaweedfs")
        try:
            os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
            server.client().create_bucket(Bucket="lockgate-repack")
            endpoint = server.endpoint

            def open_s3() -> Store:
                return Store.open(f"s3://lockgate-repack/{uuid.uuid4().hex}", create=True, s3_endpoint_url=endpoint)

            run(f"SeaweedFS S3 at {endpoint}", open_s3, kept, dropped)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
