"""Completeness (Sundararajan et al. 2017): attributions should sum to f(x) - f(baseline).

Exact for Integrated Gradients in the limit of steps; a diagnostic for any additive method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from audit.attribution.baselines import make_baseline
from audit.attribution.options import BaselineSpec

from ._eval import prepare, target_scores
from .base import QualityMetric


class Completeness(QualityMetric):
    """For images computed here from input-space maps; for texts the Integrated Gradients engine reports
    the gap of each text itself (``TokenAttribution.delta``)."""

    name = "completeness_error"
    listing = 60
    label = "Completeness gap"
    paper = "Sundararajan, Taly & Yan (2017). Axiomatic Attribution for Deep Networks. ICML."
    direction = "lower"
    category = "axiomatic"
    modalities = ("image", "text")
    value_range = (0.0, float("inf"))
    description = "|sum of attributions - (f(x) - f(baseline))| in logit units, 0 when they add up exactly"
    settings = {"baseline": None, "seed": 0}

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | int | None,
                maps: torch.Tensor, **data: Any) -> "CompletenessResult":
        return completeness(model, inputs, targets, maps, **self.config)


@dataclass
class CompletenessResult:
    delta: torch.Tensor  # [B] sum(attr) - (f(x) - f(baseline))
    output_gap: torch.Tensor  # [B] f(x) - f(baseline)
    spec: type[QualityMetric] = field(default=Completeness)

    @property
    def values(self) -> torch.Tensor:
        return self.abs_error

    @property
    def abs_error(self) -> torch.Tensor:
        return self.delta.abs()

    @property
    def relative_error(self) -> torch.Tensor:
        return self.delta.abs() / self.output_gap.abs().clamp_min(1e-12)


def completeness(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    attributions: torch.Tensor,
    *,
    baseline: BaselineSpec = None,
    seed: int = 0,
) -> CompletenessResult:
    """Completeness gap of input-space ``attributions`` for the target logit."""
    x, t = prepare(model, inputs, targets)
    if attributions.shape != x.shape:
        raise ValueError("completeness needs input-space attributions with the inputs' shape")
    base = make_baseline(baseline, x, seed=seed)
    f = target_scores(model, torch.cat([x, base]), torch.cat([t, t]), kind="logit")
    gap = f[: x.shape[0]] - f[x.shape[0] :]
    delta = attributions.detach().float().to(x.device).flatten(1).sum(1) - gap
    return CompletenessResult(delta=delta.cpu(), output_gap=gap.cpu())
