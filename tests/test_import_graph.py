"""The import graph of ``gateway/``, ``loader/``, ``store/`` and ``monitoring/``, module by module:
no circles, and the gateway's layers as ``docs/architecture.md`` draws them.

    protocols (codecs and transports)  ->  data plane and serving  <-  control plane
                                       ->  control plane

- Every import counts: lazy ones inside functions and type-only ones under ``TYPE_CHECKING`` too
  (a type-only circle is still two modules that cannot be understood apart).
- ``from package import name`` is an import of ``package.name`` when that is a module (it is the
  submodule Python loads), else of the package.
- The serving modules (the data plane, deployments, batcher, serving paths, request decoders)
  import no protocol and no control-plane module: the plane is given what it needs (the
  endpoint lookup) by the composition root.
- No protocol module imports another protocol's.

The last test shows the checks can fail, on graphs written to break them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("store", "loader", "monitoring", "gateway")

# The gateway's modules by layer (docs/architecture.md, "The house"). A module not listed is the
# composition root or shared plumbing (app, settings, wiring, auth, errors, cli, admin routes...).
SERVING = {
    "gateway.data_plane", "gateway.endpoints", "gateway.batcher", "gateway.serving_path", "gateway.fast_request",
    "gateway.typed_request", "gateway.lean_document", "gateway.prediction_json", "gateway.request_guard",
    "gateway.scoring", "gateway.skew_setup", "gateway.shadow", "gateway.decode_pool", "gateway.decode_steps",
    "gateway.roles", "gateway.routing", "gateway.serving_options", "gateway.version_ref", "gateway.request_body",
    "gateway.classifier",
}  # fmt: skip
CONTROL = {
    "gateway.deployer", "gateway.role_control", "gateway.preparer", "gateway.traffic_policy", "gateway.ledger",
    "gateway.deploy_events", "gateway.deploy_metrics", "gateway.endpoint_spec", "gateway.config_file",
    "gateway.endpoint_names", "gateway.live_endpoints",
}  # fmt: skip
PROTOCOLS = {
    "mlflow": {"gateway.invocation", "gateway.routes.mlflow_protocol"},
    "v2": {"gateway.v2_tensors", "gateway.v2_plain", "gateway.v2_plain_json", "gateway.v2_datatypes",
           "gateway.v2_inference", "gateway.v2_models", "gateway.v2_outputs", "gateway.grpc_server",
           "gateway.v2_grpc", "gateway.v2_grpc.messages", "gateway.routes.v2_routes"},
}  # fmt: skip


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
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
    protocol_of = {module: name for name, members in PROTOCOLS.items() for module in members}
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if module in SERVING and (target in CONTROL or target in protocol_of):
                problems.append(f"{module} (serving) imports {target}: the data plane is given what it needs")
            if module in protocol_of and target in protocol_of and protocol_of[module] != protocol_of[target]:
                problems.append(f"{module} ({protocol_of[module]}) imports {target} ({protocol_of[target]})")
    return problems


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph({name: path.read_text() for name, path in module_files().items()})


def test_every_listed_module_exists(graph: dict[str, set[str]]) -> None:
    listed = SERVING | CONTROL | set().union(*PROTOCOLS.values())
    assert not listed - set(graph), f"listed but missing (update the layers): {sorted(listed - set(graph))}"


def test_no_module_imports_its_way_back_to_itself(graph: dict[str, set[str]]) -> None:
    assert not circles(graph), "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles(graph))


def test_the_gateway_keeps_its_layers(graph: dict[str, set[str]]) -> None:
    problems = layering_violations(graph)
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail() -> None:
    looped = import_graph({
        "gateway.a": "from gateway.b import x\n",
        "gateway.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.a import y\n",
        "gateway.c": "def f():\n    import gateway.d\n",
        "gateway.d": "from gateway import c\n",
        "gateway": "",
        "gateway.e": "from gateway import a\n",  # the submodule, not the package: no false circle
    })  # fmt: skip
    assert circles(looped) == [["gateway.a", "gateway.b"], ["gateway.c", "gateway.d"]]
    crossed = {"gateway.data_plane": {"gateway.deployer"}, "gateway.v2_tensors": {"gateway.invocation"}}
    assert len(layering_violations(crossed)) == 2
