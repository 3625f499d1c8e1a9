"""Counterfactuals: the smallest change that flips a decision, for one sample or a whole reference set; the
use case and its spec, the ``counterfactuals`` job, the full audit's counterfactuals step (the swap probe for
text models) and the report's counterfactuals section."""

from audit.services.analyses.counterfactuals.job import JOB
from audit.services.analyses.counterfactuals.report import REPORT
from audit.services.analyses.counterfactuals.service import CF_SPEC, run_reference_counterfactuals
from audit.services.analyses.counterfactuals.step import STEP
from audit.services.analyses.registry import Analysis, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="counterfactuals", label="Counterfactuals", order=50, kinds=("counterfactual",),
    use_cases=(UseCase(CF_SPEC, run_reference_counterfactuals),), jobs=(JOB,), step=STEP, report=REPORT,
), module=__name__)
