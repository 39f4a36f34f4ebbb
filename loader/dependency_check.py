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


# Distributions that install the same module under another name: the requirement a model
# records (``xgboost==3.2.0``) is met by its CPU build (``xgboost-cpu``, what the image ships).
_SAME_MODULE = {"xgboost": "xgboost-cpu"}


def _as_installed(requirement: str) -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        name = Requirement(requirement).name.lower()
    except InvalidRequirement:
        return requirement
    alternative = _SAME_MODULE.get(name)
    if alternative is None:
        return requirement
    try:
        distribution(name)
        return requirement
    except PackageNotFoundError:
        pass
    try:
        distribution(alternative)
    except PackageNotFoundError:
        return requirement
    return alternative + requirement[len(name) :]


def requirement_mismatches(model_dir: Path) -> list[str]:
    """MLflow's warnings for ``model_dir/requirements.txt`` against this environment ([] if none)."""
    requirements = model_dir / "requirements.txt"
    if not requirements.is_file():
        return []
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    lines = [
        _as_installed(line.strip())
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    logger = logging.getLogger("mlflow.utils.requirements_utils")
    collect = _Collect()
    logger.addHandler(collect)
    try:
        warn_dependency_requirement_mismatches(lines)
    finally:
        logger.removeHandler(collect)
    return collect.messages
