"""Image attribution engine: gradient, CAM and perturbation methods behind one planner.

``attribute`` returns raw maps per method; ``explain`` adds per-method costs and diagnostics.
"""

from .base import ExplainContext
from .costs import MethodCost, method_costs, total_cost
from .display import normalize_for_display
from .featurevis import activation_maximization
from .hooks import HookBundle, live_hook_count
from .layers import resolve_layer, to_spatial
from .options import METHODS, AttributionOptions, MethodName
from .planner import (
    DEFAULT_METHODS,
    REGISTRY,
    AttributionResult,
    FastPathReport,
    MethodInfo,
    attribute,
    explain,
)
from .stats import spearman
from .vit import attention_rollout

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "REGISTRY",
    "AttributionOptions",
    "AttributionResult",
    "ExplainContext",
    "FastPathReport",
    "HookBundle",
    "MethodCost",
    "MethodInfo",
    "MethodName",
    "activation_maximization",
    "attention_rollout",
    "attribute",
    "explain",
    "live_hook_count",
    "method_costs",
    "normalize_for_display",
    "resolve_layer",
    "spearman",
    "to_spatial",
    "total_cost",
]
