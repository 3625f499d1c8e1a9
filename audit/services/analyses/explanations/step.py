"""The full audit's explanations step: the report's figure methods on the samples the report will show, then
the reference set's first samples, up to the audit's explanation budget."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from audit.attribution import method_spec
from audit.services.analyses.explanations.service import explain_reference_set
from audit.services.analyses.full_audit.plan import AuditPlan, StepSkipped, figure_samples
from audit.services.analyses.registry import AuditStep
from audit.services.analyses.reports.service import FIGURE_METHODS, FIGURE_OPTIONS, report_sample_keys
from audit.services.core.datasets import sample_index
from audit.services.core.handles import handle_for
from audit.services.governance.principals import Principal

if TYPE_CHECKING:
    from audit.services.analyses.full_audit.service import FullAuditOptions

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]


def _run(plan: AuditPlan, opts: FullAuditOptions, actor: Principal, progress: Progress) -> list[int]:
    if plan.kind == "text":
        raise StepSkipped("reference-set explanations apply to image models; the report computes token attributions")
    methods, not_applicable = applicable_methods(plan.family, plan.version,
                                                 list(opts.explain_methods or FIGURE_METHODS))
    if not methods:
        raise StepSkipped("; ".join(f"{m}: {why}" for m, why in not_applicable.items()))
    for method, why in not_applicable.items():  # e.g. the layer methods on TorchScript: the others still run
        log.info("full audit: explanations without %s: %s", method, why)
    options = dict(opts.explain_options if opts.explain_options is not None else FIGURE_OPTIONS)
    res = explain_reference_set(plan.family, plan.version, plan.dataset, methods=methods, options=options,
                                keys=_explained_keys(plan, opts), actor=actor, progress=progress)
    return [res.run_id]


def _explained_keys(plan: AuditPlan, opts: FullAuditOptions) -> list[str]:
    """``explain_limit`` samples: first the ones the report will show (so it reuses their maps instead of
    computing them again), then the reference set's first samples."""
    shown = report_sample_keys(plan.family, plan.version, plan.dataset, figure_samples=figure_samples(opts))
    rest = [k for k in sample_index(plan.dataset).keys if k not in set(shown)]
    return (shown + rest)[:max(opts.explain_limit, 0)]


def applicable_methods(family: str, version: str, methods: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``methods`` split into those that apply to the version's model and, for the others, why not (the
    methods' own declarations: e.g. no layer methods on a TorchScript model, which takes no hooks)."""
    module = handle_for(family, version).module
    reasons = {m: method_spec(m).not_applicable_reason(module) for m in methods}
    return [m for m in methods if reasons[m] is None], {m: r for m, r in reasons.items() if r is not None}


STEP = AuditStep("explanations", 0.15, _run)
