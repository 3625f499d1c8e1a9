"""No import cycle inside the attribution engines (issue 23): ``audit/attribution`` and ``audit/text`` (with the
shared ``audit/declarations.py``, ``audit/catalogue.py`` and ``audit/quadrature.py``), counting every import a module makes: at
module level, under ``if TYPE_CHECKING:`` and inside functions. So no import is deferred to hide a cycle."""

from __future__ import annotations

import ast

import pytest

from tests.import_graph import cycles, import_graph, import_nodes, modules_under

ENGINES = ("audit/attribution", "audit/text", "audit/declarations.py", "audit/catalogue.py", "audit/quadrature.py")
KINDS = {
    "module-level": dict(functions=False, type_checking=False),
    "with-type-checking": dict(functions=False, type_checking=True),
    "every-import": dict(functions=True, type_checking=True),
}


def test_the_cycle_finder_finds_cycles_and_self_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_what_each_kind_of_import_runs():
    source = ast.parse(
        "import a\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import b\n"
        "def f():\n    import c\n"
        "class K:\n    import d\n"
        "try:\n    import e\nexcept ImportError:\n    import g\n"
    )

    def names(**kind):
        return {alias.name for node in import_nodes(source, **kind) for alias in node.names}

    assert names(functions=False, type_checking=False) == {"a", "TYPE_CHECKING", "d", "e", "g"}
    assert names(functions=False, type_checking=True) == {"a", "TYPE_CHECKING", "b", "d", "e", "g"}
    assert names(functions=True, type_checking=True) == {"a", "TYPE_CHECKING", "b", "c", "d", "e", "g"}

    modules = modules_under(ENGINES)
    module_level = import_graph(modules, **KINDS["module-level"])
    every = import_graph(modules, **KINDS["every-import"])
    # base registers its classes: it imports the registry (a relative import of a sibling module)
    assert "audit.attribution.registry" in module_level["audit.attribution.base"]
    assert {"audit.text.base", "audit.text.occlusion"} <= module_level["audit.text.methods.occlusion"]
    # a module's own packages are already being imported: never an edge
    assert not {"audit.text", "audit.text.methods"} & module_level["audit.text.methods.occlusion"]
    # an import inside a function counts only in the graph of every import, with the packages it runs
    rollout = "audit.attribution.methods.attention_rollout"
    assert {"audit.text", "audit.text._model"} <= every[rollout]
    assert "audit.text._model" not in module_level[rollout]
    assert {"audit.declarations", "audit.catalogue", "audit.quadrature", "audit.text.methods.shap_partition"} <= set(modules)


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_import_cycle_in_the_attribution_engines(kind):
    found = cycles(import_graph(modules_under(ENGINES), **KINDS[kind]))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
