"""Explanation quality in the report: deletion/insertion and sanity checks of the report's own maps (stored as
``explanation_quality``), localisation on declared regions, and ERASER scores of token attributions."""

from audit.services.analyses.registry import Analysis, Ref, register_analysis

ANALYSIS = register_analysis(Analysis(
    name="quality", label="Explanation quality", order=20, report=Ref(f"{__name__}.report", "REPORT"),
), module=__name__)
