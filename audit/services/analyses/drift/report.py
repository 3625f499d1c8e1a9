"""The report's drift section: the newest stored drift result against the parent version (computed when
missing and allowed, with the report's drift budget)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from audit.report import sections as S
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.report.sections.drift import AREA
from audit.results.drift import DriftAssessment
from audit.services.analyses.drift.service import DriftError, compute_drift
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import DRIFT_LIMIT, DRIFT_OPTIONS, Gathering
from audit.services.core.runs import get_analysis, stored_analyses
from audit.services.governance.principals import PermissionDenied


def _result_id(res: Any) -> Optional[int]:
    if isinstance(res, Mapping):
        return res.get("result_id")
    return getattr(res, "result_id", None)


def _drift(g: Gathering) -> tuple[Optional[DriftAssessment], Optional[str]]:
    """The newest stored drift result against the parent version (computed when missing and allowed)."""
    m, parent = g.model, g.model.parent
    if not parent:
        return None, None
    stored = max((r for r in stored_analyses(m.family, m.version, "drift") if r.other_version == parent),
                 key=lambda r: r.id, default=None)
    note = None
    if stored is None and g.compute and g.reference is not None:
        try:
            res = compute_drift(m.family, parent, m.version, dataset=g.dataset, limit=DRIFT_LIMIT[m.kind],
                                options=dict(DRIFT_OPTIONS), actor=g.actor)
            rid = _result_id(res)
            stored = get_analysis(int(rid)) if rid is not None else None
            g.computed.append("drift")
        except (DriftError, PermissionDenied) as exc:
            note = str(exc)
    return (DriftAssessment.from_stored(stored) if stored is not None else None), note


def gather(g: Gathering) -> list[Section]:
    assessment, note = _drift(g)
    g.cited += list(assessment.methods) if assessment is not None else []
    return [S.drift_section(g.model, assessment, note=note, dataset=g.dataset)]


REPORT = ReportPart(SECTION_BY_KEY["drift"], gather, areas=(AREA,), finding_rank=5)
