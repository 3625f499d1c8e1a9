"""The full audit's counterfactuals step: a counterfactual search on the first reference images, or for a text
model the swap probe of the reference texts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from audit.services.analyses.counterfactuals.service import run_reference_counterfactuals
from audit.services.analyses.fairness.service import run_text_probe
from audit.services.analyses.full_audit.plan import AuditPlan
from audit.services.analyses.registry import AuditStep
from audit.services.governance.principals import Principal

if TYPE_CHECKING:
    from audit.services.analyses.full_audit.service import FullAuditOptions

Progress = Optional[Callable[[float, str], None]]


def _run(plan: AuditPlan, opts: FullAuditOptions, actor: Principal, progress: Progress) -> list[int]:
    if plan.kind == "text":
        res = run_text_probe(plan.family, plan.version, dataset=plan.dataset, actor=actor)
    else:
        res = run_reference_counterfactuals(plan.family, plan.version, dataset=plan.dataset, limit=opts.cf_limit,
                                            seed=opts.seed, actor=actor, progress=progress, **dict(opts.cf_search))
    return [res.stored.id]


STEP = AuditStep("counterfactuals", 0.15, _run)
