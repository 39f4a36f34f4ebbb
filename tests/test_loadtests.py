"""CI's smoke of ``make loadtest``: every locust scenario for 6 seconds against the real demo
gateway on 127.0.0.1, with the limits that set locust's exit code."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo registry and store for both runs: preparing it is a third of a run's time."""
    return tmp_path_factory.mktemp("loadtest-demo")


@pytest.mark.slow
def test_loadtest_smoke_passes_with_zero_failures(tmp_path: Path, demo_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run.py"), "--duration", "6s", "--users", "8",
         "--move-every", "3", "--max-p95-ms", "2000", "--out", str(tmp_path), "--demo-dir", str(demo_dir)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    print(output[-4000:])
    assert result.returncode == 0, output[-4000:]
    for scenario in ("predictions", "swap", "follow", "canary"):
        with (tmp_path / f"{scenario}_stats.csv").open() as handle:
            total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
        assert int(total["Request Count"]) > 50, scenario
        assert int(total["Failure Count"]) == 0, scenario
        assert (tmp_path / f"{scenario}.html").stat().st_size > 1000
    assert "swap scenario:" in output and "follow scenario:" in output
    assert "canary scenario:" in output and "each on one version" in output


@pytest.mark.slow
def test_the_limits_fail_a_run(tmp_path: Path, demo_dir: Path) -> None:
    """A p95 limit no real run can meet makes locust exit non-zero: the limits can fail."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run.py"), "--duration", "3s", "--users", "2",
         "--scenarios", "predictions", "--max-p95-ms", "0.001", "--out", str(tmp_path), "--demo-dir", str(demo_dir)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "LOADTEST FAILED" in result.stdout + result.stderr
