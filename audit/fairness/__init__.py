"""Bias audit: performance and explanations broken down by group, and counterfactual fairness probes.

Entry points: `group_metrics`, `load_group_csv`, `explanation_disparity` (with `region_masks` from the
data's declared boxes), `map_disparity` (region-free), `text_swap_probe`.
"""

from audit.fairness import errors
from audit.fairness.disparity import (
    ExplanationDisparity,
    explanation_disparity,
    identity_token_mask,
    region_masks,
    text_explanation_disparity,
)
from audit.fairness.maps import MapDisparity, map_disparity
from audit.fairness.metrics import METRICS, GroupMetricsResult, MetricSpec, group_metrics
from audit.fairness.probe import IdentitySwapper, SwapDetail, TextSwapProbeResult, text_swap_probe
from audit.fairness.tables import GroupTable, load_group_csv
from audit.fairness.terms import DEFAULT_NAMES, DEFAULT_SWAPS, identity_terms

__all__ = [
    "DEFAULT_NAMES",
    "DEFAULT_SWAPS",
    "METRICS",
    "ExplanationDisparity",
    "GroupMetricsResult",
    "GroupTable",
    "IdentitySwapper",
    "MapDisparity",
    "MetricSpec",
    "SwapDetail",
    "TextSwapProbeResult",
    "errors",
    "explanation_disparity",
    "group_metrics",
    "identity_terms",
    "identity_token_mask",
    "load_group_csv",
    "map_disparity",
    "region_masks",
    "text_explanation_disparity",
    "text_swap_probe",
]
