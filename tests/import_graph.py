"""The project's import graph, parsed with ``ast`` (nothing is imported), and its cycles.

An import of ``a.b.c`` also runs the packages ``a`` and ``a.b`` (their ``__init__`` first), except the
importer's own packages, which are already being imported. Which imports count is the caller's choice:
those a module runs when it is imported, those under ``if TYPE_CHECKING:`` (they never run, but a cycle
there is still two modules that each need the other), and those inside function bodies.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules_under(folders: Sequence[str], root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module under the folders (``audit/text``) or files named."""
    out: dict[str, Path] = {}
    for folder in folders:
        target = root / folder
        paths = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
        for path in paths:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.Module, *, functions: bool, type_checking: bool) -> Iterator[ast.stmt]:
    """The import statements of a module: at module level always, in function bodies and under
    ``if TYPE_CHECKING:`` when asked."""

    def walk(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If) and _is_type_checking(node):
                if type_checking:
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if functions:
                    yield from walk(node.body)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body)
            else:
                for name in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(getattr(node, name, None) or [])

    yield from walk(tree.body)


def _targets(node: ast.stmt, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(modules: dict[str, Path], *, functions: bool, type_checking: bool) -> dict[str, set[str]]:
    """Module -> the modules among ``modules`` that importing it runs (packages included)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in import_nodes(tree, functions=functions, type_checking=type_checking):
            for target in _targets(node, name, path.name == "__init__.py"):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the packages of ``target``, then ``target`` itself
                    dotted = ".".join(parts[:i])
                    if dotted in modules and dotted not in own:
                        graph[name].add(dotted)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, and modules that import themselves."""
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
