"""The report's counterfactuals section: stored counterfactual searches and, for text models, swap probes."""

from __future__ import annotations

from audit.report import sections as S
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.report.sections.counterfactuals import AREA
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import Gathering
from audit.services.core.runs import stored_analyses


def gather(g: Gathering) -> list[Section]:
    m = g.model
    return [S.counterfactuals_section(m, stored_analyses(m.family, m.version, "counterfactual"),
                                      stored_analyses(m.family, m.version, "text_probe"),
                                      max_flip_rate=g.thresholds.max_text_flip_rate, dataset=g.dataset)]


REPORT = ReportPart(SECTION_BY_KEY["counterfactuals"], gather, areas=(AREA,), finding_rank=4)
