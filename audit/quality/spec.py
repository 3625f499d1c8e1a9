"""What each explanation-quality metric is, declared as data (direction, category, range).

Reports render any metric generically from its spec: which way is better, what it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "robustness", "randomisation", "axiomatic", "localisation"]

# An explainer maps (model, inputs [B, C, H, W], targets [B]) to attributions.
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    direction: Direction
    category: Category
    value_range: tuple[float, float]
    description: str

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is better than ``b`` under this metric's direction."""
        return a > b if self.direction == "higher" else a < b


DELETION = MetricSpec(
    "deletion_auc", "lower", "faithfulness", (0.0, 1.0),
    "area under the target probability as the most relevant pixels are replaced by the baseline",
)
INSERTION = MetricSpec(
    "insertion_auc", "higher", "faithfulness", (0.0, 1.0),
    "area under the target probability as the most relevant pixels are added onto a blank canvas",
)
INFIDELITY = MetricSpec(
    "infidelity", "lower", "faithfulness", (0.0, float("inf")),
    "expected squared error between attribution-weighted perturbations and the output change",
)
MAX_SENSITIVITY = MetricSpec(
    "max_sensitivity", "lower", "robustness", (0.0, float("inf")),
    "largest relative change of the explanation under small uniform input perturbations",
)
STABILITY = MetricSpec(
    "seed_stability", "higher", "robustness", (-1.0, 1.0),
    "mean rank correlation between maps of a stochastic method computed with different seeds",
)
RANDOMISATION = MetricSpec(
    "randomisation_rank_corr", "lower", "randomisation", (-1.0, 1.0),
    "rank correlation between maps of the trained and the progressively randomised model",
)
COMPLETENESS = MetricSpec(
    "completeness_error", "lower", "axiomatic", (0.0, float("inf")),
    "|sum of attributions - (f(x) - f(baseline))|",
)

METRICS: dict[str, MetricSpec] = {
    s.name: s for s in (DELETION, INSERTION, INFIDELITY, MAX_SENSITIVITY, STABILITY, RANDOMISATION, COMPLETENESS)
}


def method_explainer(method: str, *, layer: nn.Module | str | None = None, **options: object) -> Explainer:
    """An :data:`Explainer` running one engine method with fixed options."""
    from audit.attribution import attribute

    def run(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return attribute(model, inputs, targets, [method], layer, **options)[method]  # type: ignore[list-item]

    run.__name__ = method
    return run
