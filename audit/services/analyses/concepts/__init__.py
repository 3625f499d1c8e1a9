"""Concept tests (TCAV) with significance against random runs: the use case and its spec, the ``tcav`` job
and command, the full audit's concepts step and the report's concept-test section."""

from audit.services.analyses.concepts.cli import add_commands
from audit.services.analyses.concepts.job import JOB
from audit.services.analyses.registry import Analysis, Ref, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="concepts", label="Concept tests", order=30,
    use_cases=(UseCase(f"{__name__}.service", "TCAV_SPEC", "run_concept_test"),), jobs=(JOB,),
    step=Ref(f"{__name__}.step", "STEP"), report=Ref(f"{__name__}.report", "REPORT"), commands=add_commands,
), module=__name__)
