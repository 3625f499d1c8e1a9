"""Image attribution engine: gradient, CAM and perturbation methods behind one planner.

``attribute`` returns raw maps per method; ``explain`` adds per-method costs and diagnostics.
Each method is one class in ``methods/`` that declares its options, result options, randomness
and cost; ``METHODS``, ``method_spec`` and ``result_option_defaults`` read those declarations.
"""

from . import registry as _registry
from .base import AttributionMethod, Evaluations, ExplainContext, Geometry, MethodNotApplicable
from .costs import MethodCost, method_costs, total_cost
from .display import normalize_for_display
from .featurevis import activation_maximization
from .hooks import HookBundle, live_hook_count
from .layers import default_layer, resolve_layer, to_spatial
from .methods.attention_rollout import attention_rollout
from .options import AttributionOptions, MethodName, Option
from .planner import (
    DEFAULT_METHODS,
    AttributionResult,
    FastPathReport,
    MethodInfo,
    attribute,
    explain,
)
from .registry import METHODS, REGISTRY, method_spec, result_option_defaults
from .seeding import sample_seeds
from .stats import spearman

_registry.discover()

# The stochastic methods of the built-in registry (a method added later is listed by
# registry.stochastic_methods() and by method_spec(name).stochastic).
STOCHASTIC_METHODS: tuple[str, ...] = _registry.stochastic_methods()

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "REGISTRY",
    "STOCHASTIC_METHODS",
    "AttributionMethod",
    "AttributionOptions",
    "AttributionResult",
    "Evaluations",
    "ExplainContext",
    "FastPathReport",
    "Geometry",
    "HookBundle",
    "MethodCost",
    "MethodInfo",
    "MethodNotApplicable",
    "MethodName",
    "Option",
    "activation_maximization",
    "attention_rollout",
    "attribute",
    "default_layer",
    "explain",
    "live_hook_count",
    "method_costs",
    "method_spec",
    "normalize_for_display",
    "resolve_layer",
    "result_option_defaults",
    "sample_seeds",
    "spearman",
    "to_spatial",
    "total_cost",
]
