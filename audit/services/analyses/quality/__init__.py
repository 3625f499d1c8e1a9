"""Explanation quality in the report: deletion/insertion and sanity checks of the report's own maps (stored as
``explanation_quality``), localisation on declared regions, and ERASER scores of token attributions."""

from audit.report.checks import KIND as QUALITY_KIND
from audit.services.analyses.quality.report import REPORT
from audit.services.analyses.registry import Analysis, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="quality", label="Explanation quality", order=20, kinds=(QUALITY_KIND,), report=REPORT,
), module=__name__)
