"""What model signatures cost: signing and verifying a 50 MB and a 1 GB model, and a restart's reuse.

    .venv/bin/python bench/signing_cost.py [--sizes 50,1024] [--repeat 3]

For each size, a model directory (an ``MLmodel`` and one weights file of random bytes) is
committed to a fresh lockgate store and materialized into a model cache, as a deploy would. Then,
the median of ``--repeat`` runs of:

- **sign**: ``lockgate store sign``'s work on the materialized version (the OpenSSF model-signing
  format, an EC P-256 key, SHA-256 over every file) and attaching the bundle to the weights commit;
- **verify**: the gateway's first check of that version (``SignatureChecker.check``: read the
  attached bundle, hash every file, check the signature with the trusted key);
- **reuse**: the check of a later load of the same version (a restart): the verdict kept with
  the version, reused after proving the files are the ones verified (no hashing).

Writes ``bench/results/signing.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from lockgate.loader.cache import ModelCache  # noqa: E402
from lockgate.loader.resolved import ResolvedModel, WeightsLocation  # noqa: E402
from lockgate.loader.signing import attached  # noqa: E402
from lockgate.loader.signing.check import SignatureChecker  # noqa: E402
from lockgate.loader.signing.policy import load_policy  # noqa: E402
from lockgate.loader.signing.signer import SigningMethod, sign_directory  # noqa: E402
from lockgate.store import Store  # noqa: E402


def keys(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "key.pem", folder / "key.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def model_files(folder: Path, megabytes: int) -> Path:
    model = folder / f"model-{megabytes}mb"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n")
    with (model / "weights.bin").open("wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 20))
    return model


def median_seconds(work: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(megabytes: int, repeat: int, work: Path) -> dict[str, float]:
    private, public = keys(work)
    store = Store.open(str(work / f"store-{megabytes}"), create=True)
    model = model_files(work, megabytes)
    files = [(f"m{megabytes}/{name}", model / name) for name in ("MLmodel", "weights.bin")]
    pushed = store.commit_files("models", "main", files)
    location = WeightsLocation(commit=pushed.commit_id, path=f"m{megabytes}", repo="models")
    resolved = ResolvedModel(uri=location.uri, reference="store", moves=False, name=None, version=None,
                             run_id=None, weights=location)  # fmt: skip
    cache = ModelCache(work / f"cache-{megabytes}", 1 << 40)
    directory, _ = cache.materialize(lambda: store, location)
    method = SigningMethod(private_key=private)

    def sign() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            signature = Path(scratch) / "model.sig"
            sign_directory(directory, method, signature)
            attached.attach(store, location, signature.read_bytes(), signer=method.describe())

    sign_s = median_seconds(sign, repeat)
    checker = SignatureChecker(load_policy([str(public)], required=True), lambda: store)
    derived = cache.derived_dir(location.cache_key)

    def verify_fresh() -> None:
        for record in derived.glob("signature-*.json"):
            record.unlink()
        verdict = checker.check(resolved, directory, derived)
        assert verdict is not None and verdict.ok and not verdict.from_cache

    verify_s = median_seconds(verify_fresh, repeat)

    def reuse() -> None:
        verdict = checker.check(resolved, directory, derived)
        assert verdict is not None and verdict.ok and verdict.from_cache

    reuse_s = median_seconds(reuse, max(repeat, 5))
    return {"megabytes": megabytes, "sign_s": sign_s, "verify_s": verify_s, "reuse_s": reuse_s,
            "verify_mb_s": megabytes / verify_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,1024", help="model sizes in MB (default 50,1024)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="lockgate-signing-bench-") as tmp:
        for megabytes in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / str(megabytes)
            folder.mkdir()
            result = measure(megabytes, args.repeat, folder)
            results.append(result)
            reuse_ms = result["reuse_s"] * 1000
            print(f"  {megabytes} MB: sign {result['sign_s']:.2f} s, verify {result['verify_s']:.2f} s "
                  f"({result['verify_mb_s']:.0f} MB/s), reuse on restart {reuse_ms:.1f} ms")  # fmt: skip
    lines = [
        f"# model signatures: median of {args.repeat} runs (EC P-256 key, SHA-256 over every file)",
        "",
        "| model | sign and attach s | first verify s | verify MB/s | restart reuse ms |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['megabytes']:,} MB | {r['sign_s']:.2f} | {r['verify_s']:.2f} | {r['verify_mb_s']:.0f} "
        f"| {r['reuse_s'] * 1000:.1f} |"
        for r in results
    ]
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "signing.md").write_text(table + "\n")
    (args.out / "signing.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
