"""Explanation-quality metrics: faithfulness, sanity (randomisation), completeness, robustness.

Every result carries a MetricSpec declaring its direction and category for generic reporting.
"""

from .completeness import CompletenessResult, completeness
from .faithfulness import CurveResult, InfidelityResult, deletion_curve, infidelity, insertion_curve
from .robustness import SensitivityResult, StabilityResult, max_sensitivity, stability
from .sanity import SanityResult, layer_groups, randomise_module, sanity_check
from .spec import METRICS, Explainer, MetricSpec, method_explainer

__all__ = [
    "METRICS",
    "CompletenessResult",
    "CurveResult",
    "Explainer",
    "InfidelityResult",
    "MetricSpec",
    "SanityResult",
    "SensitivityResult",
    "StabilityResult",
    "completeness",
    "deletion_curve",
    "infidelity",
    "insertion_curve",
    "layer_groups",
    "max_sensitivity",
    "method_explainer",
    "randomise_module",
    "sanity_check",
    "stability",
]
