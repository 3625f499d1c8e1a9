"""Bias audits (group metrics with confidence intervals, explanation disparity) and the identity-swap probe of
text models: the use cases and their specs, the ``bias`` job and command, the full audit's bias step and the
report's bias section."""

from audit.services.analyses.fairness.cli import add_commands
from audit.services.analyses.fairness.job import JOB
from audit.services.analyses.registry import Analysis, Ref, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="fairness", label="Bias audits", order=40,
    use_cases=(UseCase(f"{__name__}.service", "BIAS_SPEC", "run_bias_audit"),
               UseCase(f"{__name__}.service", "TEXT_PROBE_SPEC", "run_text_probe")),
    jobs=(JOB,), step=Ref(f"{__name__}.step", "STEP"), report=Ref(f"{__name__}.report", "REPORT"),
    commands=add_commands,
), module=__name__)
