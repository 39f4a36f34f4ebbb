"""The Dockerfile passes hadolint at warning level, and keeps the properties the image promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    return str(found) if found.exists() else (shutil.which("hadolint") or "hadolint")


def test_hadolint_is_clean_at_warning_level() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", str(bad)], check=False, capture_output=True, text=True
    )
    assert result.returncode != 0


def test_image_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage"
    final = text[text.rindex(stages[-1]) :]
    assert "USER 10001" in final, "runs as a non-root user"
    assert 'ENTRYPOINT ["lockgate", "serve"]' in final
    assert 'VOLUME ["/var/lib/lockgate"]' in final
    assert "HEALTHCHECK" in final
    assert "pip install" not in final and "apt-get" not in final, "no build tools in the final stage"
    assert (ROOT / ".dockerignore").is_file()
