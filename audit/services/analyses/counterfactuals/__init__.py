"""Counterfactuals: the smallest change that flips a decision, for one sample or a whole reference set; the
use case and its spec, the ``counterfactuals`` job, the full audit's counterfactuals step (the swap probe for
text models) and the report's counterfactuals section."""

from audit.services.analyses.counterfactuals.job import JOB
from audit.services.analyses.registry import Analysis, Ref, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="counterfactuals", label="Counterfactuals", order=50,
    use_cases=(UseCase(f"{__name__}.service", "CF_SPEC", "run_reference_counterfactuals"),), jobs=(JOB,),
    step=Ref(f"{__name__}.step", "STEP"), report=Ref(f"{__name__}.report", "REPORT"),
), module=__name__)
