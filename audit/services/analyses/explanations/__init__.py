"""Explanations of image models: single images and whole reference sets, stored by (model version, sample,
method, target, parameters) and reused; the Explain page's readers (``views``), the ``explain`` job and
command, the full audit's explanations step and the report's explanations section."""

from audit.services.analyses.explanations.cli import add_commands
from audit.services.analyses.explanations.job import JOB
from audit.services.analyses.registry import Analysis, Ref, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="explanations", label="Explanations", order=10, jobs=(JOB,), step=Ref(f"{__name__}.step", "STEP"),
    report=Ref(f"{__name__}.report", "REPORT"), commands=add_commands,
), module=__name__)
