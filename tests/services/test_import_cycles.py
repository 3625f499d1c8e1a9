"""No import cycle among the services and the command line (issue 23): ``audit/services``, ``audit/cli.py`` and
``audit/cli_ext``, counting every import a module makes (module level, ``if TYPE_CHECKING:`` and inside
functions), so no import is deferred to hide a cycle. The graph and the cycle finder are ``tests/import_graph``
(the engines' test uses them too)."""

from __future__ import annotations

import pytest

from tests.import_graph import cycles, import_graph, modules_under

SERVICES = ("audit/services", "audit/cli.py", "audit/cli_ext")
KINDS = {
    "module-level": dict(functions=False, type_checking=False),
    "with-type-checking": dict(functions=False, type_checking=True),
    "every-import": dict(functions=True, type_checking=True),
}


def test_the_graph_counts_the_packages_an_import_runs():
    graph = import_graph(modules_under(SERVICES), functions=False, type_checking=False)
    step = graph["audit.services.analyses.concepts.step"]
    # it imports full_audit.plan, so the full_audit package's __init__ runs first; its own package is not an edge
    assert {"audit.services.analyses.full_audit", "audit.services.analyses.full_audit.plan"} <= step
    assert "audit.services.analyses.concepts" not in step
    assert len(graph) > 60


@pytest.mark.parametrize("kind", KINDS)
def test_no_import_cycle_among_services_and_cli(kind):
    found = cycles(import_graph(modules_under(SERVICES), **KINDS[kind]))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
