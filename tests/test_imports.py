"""The package's import graph: no module imports one that imports it, and the library never imports the CLI
or the service. Imports inside functions count too (a lazy import hides a circle, it does not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _graph() -> dict[str, set[str]]:
    modules = {}
    for path in (SRC / "daer").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daer"):
                deps |= {node.module} & modules.keys()
                deps |= {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & modules.keys()
        graph[name] = deps - {name}
    return graph


def test_no_module_imports_one_that_imports_it():
    graph = _graph()
    assert len(graph) > 50
    circles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph[b]})
    assert circles == []


def test_the_library_never_imports_the_cli_or_the_service():
    graph = _graph()
    library = [m for m in graph if not m.startswith(("daer.cli", "daer.serve", "daer.__main__"))]
    leaks = {m: sorted(d for d in graph[m] if d.startswith(("daer.cli", "daer.serve"))) for m in library}
    assert {m: d for m, d in leaks.items() if d} == {}
