"""Compliance reports: gathering (``service``, with every analysis's report part), rendering and storing the
PDF, listing, downloading and signing it (``records``); the ``report`` job and the ``report``, ``report-sign``
and ``reports`` commands. The full audit generates the report after its steps."""

from audit.services.analyses.registry import Analysis, register_analysis
from audit.services.analyses.reports.cli import add_commands
from audit.services.analyses.reports.job import JOB

ANALYSIS = register_analysis(Analysis(
    name="reports", label="Compliance reports", order=90, jobs=(JOB,), commands=add_commands,
), module=__name__)
