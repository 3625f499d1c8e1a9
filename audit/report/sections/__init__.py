"""The report's sections as pure builders: gathered evidence (typed results, plain numbers, arrays) in,
a ``Section`` with its findings and cited sources out. No database, no services."""

from audit.report.sections.appendix import appendix_section, report_libraries
from audit.report.sections.base import (
    DatasetFacts,
    Gap,
    ModelFacts,
    ReferencePredictions,
    SampleChoice,
    fmt,
    pick_samples,
)
from audit.report.sections.bias import bias_section
from audit.report.sections.concepts import concept_row, concepts_section
from audit.report.sections.counterfactuals import counterfactuals_section
from audit.report.sections.data import data_section
from audit.report.sections.drift import drift_section
from audit.report.sections.explanations import (
    ExplanationRef,
    ImageExplanations,
    TextExplanations,
    explanations_section,
)
from audit.report.sections.intended_use import intended_use_section
from audit.report.sections.limitations import limitations_section
from audit.report.sections.performance import performance_section
from audit.report.sections.quality import quality_section
from audit.report.sections.signoff import PriorSignOff, signoff_section

__all__ = [
    "DatasetFacts", "ExplanationRef", "Gap", "ImageExplanations", "ModelFacts", "PriorSignOff",
    "ReferencePredictions", "SampleChoice", "TextExplanations", "appendix_section", "bias_section",
    "concept_row", "concepts_section", "counterfactuals_section", "data_section", "drift_section",
    "explanations_section", "fmt", "intended_use_section", "limitations_section", "performance_section",
    "pick_samples", "quality_section", "report_libraries", "signoff_section",
]
