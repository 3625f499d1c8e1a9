"""The report's concept-test section: every stored TCAV result of the version."""

from __future__ import annotations

from audit.report import sections as S
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.report.sections.concepts import AREA
from audit.results.concepts import ConceptTest
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import Gathering
from audit.services.core.runs import stored_analyses


def gather(g: Gathering) -> list[Section]:
    tests = [ConceptTest.from_stored(r) for r in stored_analyses(g.model.family, g.model.version, "tcav")]
    g.cited += ["tcav"] if tests else []
    return [S.concepts_section(g.model, tests)]


REPORT = ReportPart(SECTION_BY_KEY["concepts"], gather, areas=(AREA,), finding_rank=2)
