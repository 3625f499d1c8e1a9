"""Bias audits (group metrics with confidence intervals, explanation disparity) and the identity-swap probe of
text models: the use cases and their specs, the ``bias`` job and command, the full audit's bias step and the
report's bias section."""

from audit.services.analyses.fairness.cli import add_commands
from audit.services.analyses.fairness.job import JOB
from audit.services.analyses.fairness.report import REPORT
from audit.services.analyses.fairness.service import BIAS_SPEC, TEXT_PROBE_SPEC, run_bias_audit, run_text_probe
from audit.services.analyses.fairness.step import STEP
from audit.services.analyses.registry import Analysis, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="fairness", label="Bias audits", order=40, kinds=("bias", "text_probe"),
    use_cases=(UseCase(BIAS_SPEC, run_bias_audit), UseCase(TEXT_PROBE_SPEC, run_text_probe)),
    jobs=(JOB,), step=STEP, report=REPORT, commands=add_commands,
), module=__name__)
