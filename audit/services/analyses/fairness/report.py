"""The report's bias section: every stored bias audit of the version against the report's gap threshold."""

from __future__ import annotations

from audit.report import sections as S
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.report.sections.bias import AREA
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import Gathering
from audit.services.core.runs import stored_analyses


def gather(g: Gathering) -> list[Section]:
    return [S.bias_section(g.model, stored_analyses(g.model.family, g.model.version, "bias"),
                           max_gap=g.thresholds.max_group_accuracy_gap, dataset=g.dataset)]


REPORT = ReportPart(SECTION_BY_KEY["bias"], gather, areas=(AREA,), finding_rank=1)
