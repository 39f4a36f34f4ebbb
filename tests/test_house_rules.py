"""The import rules of the house (docs/architecture.md), held by reading every module's imports:

    gateway -> loader, monitoring, store        (the composition root)
    loader  -> store
    store, monitoring -> no other project package

Nothing imports ``gateway``; inside ``gateway`` no module outside ``gateway/cli`` imports the CLI.
Every import of a project module goes through the one namespace, ``lockgate.`` (issue 37): a bare
``import store`` would find a user's ``store.py`` first, or a package of that name on the index.
A test that reads the source can fail: the last test shows it does, on a module written to break
a rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("store", "loader", "monitoring", "gateway")
NAMESPACE = "lockgate."
ALLOWED = {
    "store": {"store"},
    "monitoring": {"monitoring"},
    "loader": {"loader", "store"},
    "gateway": {"gateway", "loader", "monitoring", "store"},
}


def project_imports(source: str) -> set[str]:
    """Dotted names of the project modules a module imports (at any depth, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
        found.update(name for name in names if name.startswith(NAMESPACE) and name.split(".")[1] in PACKAGES)
    return found


def violations(package: str, module: Path, source: str) -> list[str]:
    problems = []
    rel = module.relative_to(ROOT).as_posix()
    in_cli = rel.startswith("gateway/cli/")
    for imported in sorted(project_imports(source)):
        if not imported.startswith(NAMESPACE):
            problems.append(f"{rel} imports {imported}: import it as {NAMESPACE}{imported}, through the one namespace")
            continue
        name = imported.removeprefix(NAMESPACE)
        top = name.split(".")[0]
        if top not in ALLOWED[package]:
            problems.append(f"{rel} imports {name}: {package} may import only {sorted(ALLOWED[package])}")
        if package == "gateway" and not in_cli and name.startswith("gateway.cli"):
            problems.append(f"{rel} imports {name}: only the CLI imports the CLI")
    return problems


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_keeps_the_house_rules(package: str) -> None:
    problems = []
    for module in sorted((ROOT / package).rglob("*.py")):
        problems += violations(package, module, module.read_text())
    assert not problems, "\n".join(problems)


def test_the_rules_can_fail() -> None:
    bad = (
        "import lockgate.gateway.app\nfrom lockgate.loader.registry import Resolver\n\n"
        "def f():\n    from lockgate.monitoring import skew\n"
    )
    found = violations("store", ROOT / "store" / "imaginary.py", bad)
    assert len(found) == 3 and all("store may import only" in p for p in found)
    assert violations("gateway", ROOT / "gateway" / "app.py", "from lockgate.gateway.cli.console import out\n")
    bare = violations("gateway", ROOT / "gateway" / "app.py", "from store import Store\nimport loader.registry\n")
    assert len(bare) == 2 and all("through the one namespace" in p for p in bare), bare
