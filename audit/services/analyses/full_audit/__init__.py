"""The full audit: every registered analysis's step the data allows, then the report (``service``); what a step
is given (``plan``); the ``full_audit`` job and the ``audit`` command."""

from audit.services.analyses.full_audit.cli import add_commands
from audit.services.analyses.full_audit.job import JOB
from audit.services.analyses.registry import Analysis, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="full_audit", label="Full audit", order=100, jobs=(JOB,), commands=add_commands,
), module=__name__)
