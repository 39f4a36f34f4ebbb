"""The dependency check that runs after ready: MLflow's own warning, collected for the endpoint."""

from __future__ import annotations

from pathlib import Path

import sklearn

from lockgate.loader.dependency_check import requirement_mismatches


def test_a_mismatched_requirement_is_reported(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow\nscikit-learn==0.20.0\n")
    found = requirement_mismatches(tmp_path)
    assert len(found) == 1
    assert "scikit-learn==0.20.0" in found[0] and sklearn.__version__ in found[0]


def test_satisfied_requirements_report_nothing(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(f"# comment\nscikit-learn=={sklearn.__version__}\n")
    assert requirement_mismatches(tmp_path) == []


def test_no_requirements_file_reports_nothing(tmp_path: Path) -> None:
    assert requirement_mismatches(tmp_path) == []
