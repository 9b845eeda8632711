"""The shape of the code, as docs/architecture.md describes it: no import cycles among our
modules (function-local imports counted), function-local imports only where an optional
package must stay lazy, modules of a readable size, and few modules loose in pipeline/.

import-linter (`make lint`) checks the layers; these check what it does not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "api", "workers", "cli")

# Function-local imports of our own modules, each kept lazy because the module it loads
# needs an optional extra that a plain `pip install voicebatch` does not bring.
LAZY_IMPORTS = {
    # the server extra (fastapi, uvicorn, celery, flower): `voicebatch render` runs without it
    ("cli.admin", "api.app"): "server extra",
    ("cli.admin", "api.serve"): "server extra",
    ("cli.admin", "workers.app"): "server extra",
    ("cli.admin", "workers.dispatch"): "server extra",
    ("cli.admin", "workers.worker"): "server extra",
    ("cli.admin", "workers.reconciler"): "server extra",
    ("cli.admin", "api.metrics"): "server extra",
    ("cli.exporter", "workers.exporter"): "server extra",
    # start-up: `voicebatch render` sets its engine loading before it imports the
    # database and assembly code (issue 22)
    ("cli.render", "cli.render_run"): "render start-up",
    # the maya1 extra (torch, transformers, snac) and its optional runtimes
    ("cli.engine", "pipeline.engines.maya1.snac.export"): "maya1 extra (torch)",
    (
        "pipeline.engines.maya1.snac.torch",
        "pipeline.engines.maya1.snac.model",
    ): "maya1 extra (torch)",
}

# Longer than about 400 lines on purpose: one cohesive declaration list or one concept.
LONG_MODULES = {
    "pipeline.config": "the Settings declaration: one field per VOICEBATCH_* variable",
}
MAX_LINES = 400
MAX_LOOSE_PIPELINE_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@dataclass(frozen=True)
class ImportEdge:
    source: str
    target: str
    line: int
    local: bool  # inside a function: runs when called, not when the module loads


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` loads: itself, or the package it is an attribute of."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.Import | ast.ImportFrom, package: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    yield module
    yield from (f"{module}.{alias.name}" for alias in node.names)


def import_edges(modules: dict[str, Path]) -> list[ImportEdge]:
    edges: dict[tuple[str, str], ImportEdge] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        local_lines = {
            inner.lineno
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(function)
            if isinstance(inner, ast.Import | ast.ImportFrom)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for imported in _imported_names(node, package):
                if imported.split(".")[0] not in PACKAGES:
                    continue
                target = _resolve(imported, modules)
                if target is None or target == name:
                    continue
                edge = ImportEdge(name, target, node.lineno, node.lineno in local_lines)
                known = edges.get((name, target))
                if known is None or (edge.local and not known.local):
                    edges[(name, target)] = edge  # a local import is what the lazy rule checks
    return list(edges.values())


def cycles(edges: list[ImportEdge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def edges() -> list[ImportEdge]:
    return import_edges(our_modules())


def test_no_import_cycles_counting_function_local_imports(edges: list[ImportEdge]) -> None:
    assert cycles(edges) == []


def test_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    hidden = [
        ImportEdge("api.app", "api.routes", 3, local=True),
        ImportEdge("api.routes", "api.deps", 5, local=False),
        ImportEdge("api.deps", "api.app", 7, local=False),
        ImportEdge("api.deps", "pipeline.errors", 8, local=False),
    ]
    assert cycles(hidden) == [["api.app", "api.deps", "api.routes"]]


def test_function_local_imports_only_where_an_optional_package_or_start_up_stays_lazy(
    edges: list[ImportEdge],
) -> None:
    local = {(e.source, e.target) for e in edges if e.local}
    assert sorted(local - set(LAZY_IMPORTS)) == []
    assert sorted(set(LAZY_IMPORTS) - local) == []  # an entry nothing needs any more


def test_modules_are_a_readable_size() -> None:
    long = {
        name: len(path.read_text().splitlines())
        for name, path in our_modules().items()
        if len(path.read_text().splitlines()) > MAX_LINES
    }
    assert sorted(set(long) - set(LONG_MODULES)) == [], long
    assert sorted(set(LONG_MODULES) - set(long)) == []  # an exception no longer needed


def test_pipeline_is_packages_with_few_loose_modules() -> None:
    loose = sorted(
        path.name for path in (ROOT / "pipeline").glob("*.py") if path.name != "__init__.py"
    )
    assert len(loose) <= MAX_LOOSE_PIPELINE_MODULES, loose
    steps = {"ingest", "text", "audio", "engines", "plan", "render", "assemble", "storage", "state"}
    assert steps <= {path.name for path in (ROOT / "pipeline").iterdir() if path.is_dir()}
