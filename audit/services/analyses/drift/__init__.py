"""Explanation drift between versions of a family: the use case and its spec, the Drift page's readers
(``views``), the ``drift`` job, the ``drift`` and ``drift-trend`` commands, the full audit's drift step and
the report's drift section."""

from audit.services.analyses.drift.cli import add_commands
from audit.services.analyses.drift.job import JOB
from audit.services.analyses.registry import Analysis, Ref, UseCase, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="drift", label="Explanation drift", order=60,
    use_cases=(UseCase(f"{__name__}.service", "DRIFT_SPEC", "compute_drift"),), jobs=(JOB,),
    step=Ref(f"{__name__}.step", "STEP"), report=Ref(f"{__name__}.report", "REPORT"), commands=add_commands,
), module=__name__)
