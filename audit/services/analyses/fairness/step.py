"""The full audit's bias step: one stored bias audit per group column of the reference set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from audit.services.analyses.fairness.service import run_bias_audit
from audit.services.analyses.full_audit.plan import AuditPlan, StepSkipped, each_item
from audit.services.analyses.registry import AuditStep
from audit.services.governance.principals import Principal

if TYPE_CHECKING:
    from audit.services.analyses.full_audit.service import FullAuditOptions

Progress = Optional[Callable[[float, str], None]]


def _run(plan: AuditPlan, opts: FullAuditOptions, actor: Principal, progress: Progress) -> list[int]:
    columns = list(dict.fromkeys(k for g in plan.groups for k in g))
    if not columns:
        raise StepSkipped(f"dataset {plan.dataset} has no group columns")
    if any(y is None for y in plan.labels):
        raise StepSkipped(f"dataset {plan.dataset} has samples without a label")

    def one(i: int, col: str) -> Any:
        if progress:
            progress(i / len(columns), col)
        return run_bias_audit(plan.family, plan.version, dataset=plan.dataset, attributes=[col],
                              n_boot=opts.bias_n_boot, seed=opts.seed, actor=actor)

    # e.g. a column not recorded for every sample: the other columns still run
    return each_item(columns, one, str)


STEP = AuditStep("bias", 0.1, _run)
