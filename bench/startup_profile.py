"""Where lockgate's start-to-ready time goes, phase by phase, with a pyinstrument profile.

    .venv/bin/python bench/startup_profile.py [--model forest] [--html startup.html]

Registers the benchmark model (see serving_bench.py) in a fresh registry and store, then, in
one process as ``lockgate serve`` does: imports the gateway, builds the loader, resolves the
model in the registry, fetches and loads it, prepares the deployment (skew baseline, serving
path without the background ONNX conversion). Prints each phase's seconds and pyinstrument's
call tree of the whole start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="forest", choices=["iris", "diabetes", "forest", "fraud"])
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lockgate-startup-"))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    # Registering needs MLflow in a separate process, so this process starts as cold as `lockgate serve`.
    import subprocess

    subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import bench.serving_bench as b; "
         "b.register(b.build_models([sys.argv[2]]), Path(sys.argv[3]), sys.argv[4])",
         str(ROOT), args.model, str(work), tracking],
        check=True, capture_output=True,
    )  # fmt: skip
    os.environ.update(
        MLFLOW_TRACKING_URI=tracking, LOCKGATE_STORE=str(work / "store"), LOCKGATE_CACHE_DIR=str(work / "cache")
    )

    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    phases: list[tuple[str, float]] = []
    started = last = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases.append((name, now - last))
        last = now

    profiler.start()
    import gc

    gc.disable()  # as `lockgate serve` does until its startup deploys are done
    from lockgate.gateway.app import create_app  # noqa: F401 - the import is what is measured
    from lockgate.gateway.control.preparer import Preparer
    from lockgate.gateway.protocols.v2.outputs import learn_outputs
    from lockgate.gateway.serving.serving_options import ServingOptions
    from lockgate.gateway.serving.skew_setup import SkewSettings
    from lockgate.gateway.settings import Settings
    from lockgate.gateway.wiring import build_loader, store_opener

    phase("import the gateway (FastAPI, pandas, the routers)")
    settings = Settings()
    loader = build_loader(settings)
    open_store = store_opener(settings, create=True)
    phase("settings, store, loader")
    resolved = loader.resolve(f"models:/{args.model}/1")
    phase("resolve in the registry (direct sqlite read, or MLflow's client)")
    servable = loader.load(resolved, prefer_pyfunc=True)
    report = servable.report
    phase(f"fetch {report.fetch.bytes_fetched / 1e6:.0f} MB + load + warm up")
    cache = loader.cache
    preparer = Preparer(open_store, cache.derived_dir, cache.find_derived, SkewSettings(), settings.max_extra_columns,
                        protocol_facts=[learn_outputs])  # fmt: skip
    deployment = preparer(servable, ServingOptions())
    phase(f"prepare (skew baseline, serving path: {deployment.path.name})")
    gc.freeze()
    gc.enable()
    phase("freeze the startup heap")
    profiler.stop()

    total = time.perf_counter() - started
    print(f"start of a cold `lockgate serve models:/{args.model}/1`, in process ({total:.2f} s):")
    for name, seconds in phases:
        print(f"  {seconds:6.2f} s  {name}")
    print(
        f"  (fetch {report.fetch.seconds:.2f} s, load {report.load_seconds:.2f} s, "
        f"warm-up {report.warmup_seconds:.2f} s)"
    )
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
