"""Explanation-quality metrics: faithfulness, sanity (randomisation), completeness, robustness,
localisation.

Every result carries a MetricSpec declaring its direction and category for generic reporting.
"""

from .completeness import CompletenessResult, completeness
from .faithfulness import CurveResult, InfidelityResult, deletion_curve, infidelity, insertion_curve
from .localisation import POINTING_GAME, RELEVANCE_MASS, LocalisationResult, localisation
from .robustness import SensitivityResult, StabilityResult, max_sensitivity, stability
from .sanity import SanityResult, layer_groups, randomise_module, sanity_check
from .spec import METRICS, Explainer, MetricSpec, method_explainer

__all__ = [
    "METRICS",
    "CompletenessResult",
    "CurveResult",
    "Explainer",
    "InfidelityResult",
    "LocalisationResult",
    "MetricSpec",
    "POINTING_GAME",
    "RELEVANCE_MASS",
    "SanityResult",
    "SensitivityResult",
    "StabilityResult",
    "completeness",
    "deletion_curve",
    "infidelity",
    "insertion_curve",
    "layer_groups",
    "localisation",
    "max_sensitivity",
    "method_explainer",
    "randomise_module",
    "sanity_check",
    "stability",
]
