"""Does this environment satisfy the model's recorded requirements?

MLflow runs this check inside ``pyfunc.load_model``; it scans every installed distribution's
files and costs ~0.7 s, a fifth of a cold start. The loader skips it there
(``suppress_warnings``) and the gateway runs it here, off the path to ready, and shows the
result on the endpoint. Same check (MLflow's own function), not on the critical path.
"""

from __future__ import annotations

import logging
from pathlib import Path


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def requirement_mismatches(model_dir: Path) -> list[str]:
    """MLflow's warnings for ``model_dir/requirements.txt`` against this environment ([] if none)."""
    requirements = model_dir / "requirements.txt"
    if not requirements.is_file():
        return []
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    lines = [
        line.strip() for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    logger = logging.getLogger("mlflow.utils.requirements_utils")
    collect = _Collect()
    logger.addHandler(collect)
    try:
        warn_dependency_requirement_mismatches(lines)
    finally:
        logger.removeHandler(collect)
    return collect.messages
