"""Concept tests (TCAV) with significance against random runs: the use case and its spec, the ``tcav`` job
and command, the full audit's concepts step and the report's concept-test section."""

from audit.services.analyses.concepts.cli import add_commands
from audit.services.analyses.concepts.job import JOB
from audit.services.analyses.concepts.report import REPORT
from audit.services.analyses.concepts.service import TCAV_SPEC, run_concept_test
from audit.services.analyses.concepts.step import STEP
from audit.services.analyses.registry import Analysis, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="concepts", label="Concept tests", order=30, kinds=("tcav",),
    use_cases=(UseCase(TCAV_SPEC, run_concept_test),), jobs=(JOB,), step=STEP, report=REPORT, commands=add_commands,
), module=__name__)
