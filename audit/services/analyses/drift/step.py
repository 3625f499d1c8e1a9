"""The full audit's drift step: explanation drift against the version's parent, with the report's budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from audit.services.analyses.drift.service import compute_drift
from audit.services.analyses.full_audit.plan import AuditPlan, StepSkipped
from audit.services.analyses.registry import AuditStep
from audit.services.analyses.reports.service import DRIFT_LIMIT, DRIFT_OPTIONS
from audit.services.governance.principals import Principal

if TYPE_CHECKING:
    from audit.services.analyses.full_audit.service import FullAuditOptions

Progress = Optional[Callable[[float, str], None]]


def _run(plan: AuditPlan, opts: FullAuditOptions, actor: Principal, progress: Progress) -> list[int]:
    parent = plan.info.get("parent")
    if not parent:
        raise StepSkipped(f"{plan.family} {plan.version} has no parent version to compare with")
    res = compute_drift(plan.family, parent, plan.version, dataset=plan.dataset,
                        methods=list(opts.drift_methods) if opts.drift_methods else None,
                        limit=opts.drift_limit if opts.drift_limit is not None else DRIFT_LIMIT[plan.kind],
                        options=dict(opts.drift_options if opts.drift_options is not None else DRIFT_OPTIONS),
                        actor=actor, progress=progress)
    return [int(res["result_id"])]


STEP = AuditStep("drift", 0.15, _run)
