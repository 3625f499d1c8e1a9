"""No import cycle among the services and the command line (issue 23): ``audit/services`` and ``audit/cli*``
modules are parsed with ``ast``; an import of ``a.b.c`` also imports the packages ``a.b`` (their
``__init__`` runs first), except the importer's own packages, which are already being imported.

Two graphs: the imports a module runs when it is imported (module level), and every import it can run
(function bodies too). ``if TYPE_CHECKING:`` blocks never run and are left out."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, Path]:
    paths = [*ROOT.glob("audit/services/**/*.py"), ROOT / "audit" / "cli.py", *ROOT.glob("audit/cli_ext/**/*.py")]
    out = {}
    for path in paths:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module, *, module_level: bool) -> Iterator[ast.stmt]:
    def walk(body: Iterable[ast.stmt], in_function: bool) -> Iterator[ast.stmt]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, in_function)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not module_level:
                    yield from walk(node.body, True)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, in_function)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(getattr(node, field, []) or [], in_function)
    yield from walk(tree.body, False)


def _targets(node: ast.stmt, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph(*, module_level: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        tree = ast.parse(path.read_text(), str(path))
        for node in _import_nodes(tree, module_level=module_level):
            for target in _targets(node, name, path.name == "__init__.py"):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the packages of ``target``, then ``target`` itself
                    dotted = ".".join(parts[:i])
                    if dotted in modules and dotted not in own:
                        graph[name].add(dotted)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_the_packages_an_import_runs():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph(module_level=True)
    step = graph["audit.services.analyses.concepts.step"]
    # it imports full_audit.plan, so the full_audit package's __init__ runs first; its own package is not an edge
    assert {"audit.services.analyses.full_audit", "audit.services.analyses.full_audit.plan"} <= step
    assert "audit.services.analyses.concepts" not in step
    assert len(graph) > 60


@pytest.mark.parametrize("module_level", [True, False], ids=["module-level", "every-import"])
def test_no_import_cycle_among_services_and_cli(module_level):
    found = cycles(import_graph(module_level=module_level))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
