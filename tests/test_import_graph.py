"""The import graph of ``gateway/``, ``loader/``, ``store/`` and ``monitoring/``, module by module:
no circles, and the gateway's layers as ``docs/architecture.md`` draws them.

    protocols (codecs and transports)  ->  data plane and serving  <-  control plane
                                       ->  control plane

- Every import counts: lazy ones inside functions and type-only ones under ``TYPE_CHECKING`` too
  (a type-only circle is still two modules that cannot be understood apart).
- ``from package import name`` is an import of ``package.name`` when that is a module (it is the
  submodule Python loads), else of the package.
- The serving modules (``gateway/serving/``: the data plane, deployments, batcher, serving
  paths, request decoders) import no protocol and no control-plane module: the plane is given
  what it needs (the endpoint lookup) by the composition root.
- The control plane (``gateway/control/``) imports no protocol's module.
- No protocol (``gateway/protocols/<name>/``) imports another protocol's modules.

The last test shows the checks can fail, on graphs written to break them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("store", "loader", "monitoring", "gateway")

# The gateway's layers are its folders (docs/architecture.md, "The house"): gateway/serving/ (the
# data plane), gateway/control/ (the control plane) and gateway/protocols/<name>/ (one per protocol).
# What stands beside them (app, settings, wiring, auth, errors, cli, the admin and meta routes) is
# the composition root and its plumbing.
SERVING = "lockgate.gateway.serving"
CONTROL = "lockgate.gateway.control"
PROTOCOLS = "lockgate.gateway.protocols"


def layer_of(module: str) -> str | None:
    """``serving``, ``control``, ``protocols.<name>``, or None outside the three wings."""
    for prefix, layer in ((SERVING, "serving"), (CONTROL, "control")):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    if module.startswith(PROTOCOLS + "."):
        return "protocols." + module[len(PROTOCOLS) + 1 :].split(".", maxsplit=1)[0]
    return None


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            # Installed and imported only as lockgate.<package> (lockgate/__init__.py).
            name = ".".join(["lockgate", *(parts[:-1] if parts[-1] == "__init__" else parts)])
            found[name] = path
    return found


def imports_of(source: str, modules: set[str]) -> set[str]:
    """The project modules ``source`` imports, at any depth (lazy and type-only imports too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    modules = set(sources)
    return {name: imports_of(source, modules) - {name} for name, source in sources.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if layer == "serving" and other is not None and other != "serving":
                problems.append(f"{module} (serving) imports {target} ({other}): the data plane is given what it needs")
            if layer == "control" and other is not None and other.startswith("protocols."):
                problems.append(f"{module} (control) imports {target} ({other}): the control plane calls no codec")
            if (layer or "").startswith("protocols.") and (other or "").startswith("protocols.") and layer != other:
                problems.append(f"{module} ({layer}) imports {target} ({other})")
    return problems


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph({name: path.read_text() for name, path in module_files().items()})


def test_the_three_wings_exist(graph: dict[str, set[str]]) -> None:
    layers = {layer_of(module) for module in graph}
    assert {"serving", "control", "protocols.mlflow_scoring", "protocols.v2"} <= layers, layers


def test_no_module_imports_its_way_back_to_itself(graph: dict[str, set[str]]) -> None:
    assert not circles(graph), "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles(graph))


def test_the_gateway_keeps_its_layers(graph: dict[str, set[str]]) -> None:
    problems = layering_violations(graph)
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail() -> None:
    looped = import_graph({
        "lockgate.gateway.a": "from lockgate.gateway.b import x\n",
        "lockgate.gateway.b": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lockgate.gateway.a import y\n",
        "lockgate.gateway.c": "def f():\n    import lockgate.gateway.d\n",
        "lockgate.gateway.d": "from lockgate.gateway import c\n",
        "lockgate.gateway": "",
        "lockgate.gateway.e": "from lockgate.gateway import a\n",  # the submodule, not the package: no false circle
    })  # fmt: skip
    assert circles(looped) == [
        ["lockgate.gateway.a", "lockgate.gateway.b"],
        ["lockgate.gateway.c", "lockgate.gateway.d"],
    ]
    crossed = {
        "lockgate.gateway.serving.data_plane": {"lockgate.gateway.control.deployer"},
        "lockgate.gateway.protocols.v2.tensors": {"lockgate.gateway.protocols.mlflow_scoring.invocation"},
    }
    assert len(layering_violations(crossed)) == 2
