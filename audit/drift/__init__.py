"""Explanation drift between model versions: per-sample map similarity, distributions and flags,
plus changes in stored metrics, concept scores and bias disparities.
"""

from audit.drift.compare import (
    QUANTILES,
    SIMILARITY_METRICS,
    DriftResult,
    DriftThresholds,
    MethodDrift,
    PredictionChange,
    assess_drift,
    compare_method,
    distribution,
    prediction_change,
)
from audit.drift.deltas import (
    ConceptDelta,
    DisparityDelta,
    MetricDelta,
    bias_deltas,
    metric_deltas,
    tcav_deltas,
)
from audit.drift.similarity import MapSimilarity, compare_maps, rank_correlation, relevance, ssim, topk_overlap

__all__ = [
    "QUANTILES",
    "SIMILARITY_METRICS",
    "ConceptDelta",
    "DisparityDelta",
    "DriftResult",
    "DriftThresholds",
    "MapSimilarity",
    "MethodDrift",
    "MetricDelta",
    "PredictionChange",
    "assess_drift",
    "bias_deltas",
    "compare_maps",
    "compare_method",
    "distribution",
    "metric_deltas",
    "prediction_change",
    "rank_correlation",
    "relevance",
    "ssim",
    "tcav_deltas",
    "topk_overlap",
]
