"""Explanation-quality metrics: faithfulness (deletion, insertion, infidelity, ERASER), sanity (model
randomisation), completeness, robustness, localisation.

Each metric is a :class:`QualityMetric` subclass that declares its label, paper, direction, category and
modalities and registers itself; importing this package registers the built-in ones.
"""

from . import registry
from .base import CurveMetric, Explainer, QualityMetric, Scores, method_explainer
from .completeness import Completeness, CompletenessResult, completeness
from .eraser import ERASER_BINS, ERASER_METRICS, Comprehensiveness, EraserScores, Sufficiency, eraser_scores
from .faithfulness import CURVE_STEPS, CurveResult, Deletion, Infidelity, Insertion, deletion_curve, infidelity, insertion_curve
from .localisation import (LOCALISATION_METRICS, POINTING_GAME, RELEVANCE_MASS, LocalisationResult, PointingGame,
                           RelevanceMass, localisation)
from .registry import METRICS, default_metrics, find_metric, metric_class, registered
from .robustness import MaxSensitivity, SeedStability, StabilityResult, max_sensitivity, stability
from .sanity import ModelRandomisation, SanityResult, layer_groups, randomise_module, sanity_check
from .scoring import MapScores, score_maps

registry.discover()  # a metric in a new module of this package registers without a line here

__all__ = [
    "CURVE_STEPS",
    "Completeness",
    "CompletenessResult",
    "Comprehensiveness",
    "CurveMetric",
    "CurveResult",
    "Deletion",
    "ERASER_BINS",
    "ERASER_METRICS",
    "EraserScores",
    "Explainer",
    "Infidelity",
    "Insertion",
    "LOCALISATION_METRICS",
    "LocalisationResult",
    "METRICS",
    "MapScores",
    "MaxSensitivity",
    "ModelRandomisation",
    "POINTING_GAME",
    "PointingGame",
    "QualityMetric",
    "RELEVANCE_MASS",
    "RelevanceMass",
    "SanityResult",
    "Scores",
    "SeedStability",
    "StabilityResult",
    "Sufficiency",
    "completeness",
    "default_metrics",
    "deletion_curve",
    "eraser_scores",
    "find_metric",
    "infidelity",
    "insertion_curve",
    "layer_groups",
    "localisation",
    "max_sensitivity",
    "method_explainer",
    "metric_class",
    "randomise_module",
    "registered",
    "registry",
    "sanity_check",
    "score_maps",
    "stability",
]
