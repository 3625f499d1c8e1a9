"""Completeness (Sundararajan et al. 2017): attributions should sum to f(x) - f(baseline).

Exact for Integrated Gradients in the limit of steps; a diagnostic for any additive method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audit.attribution.baselines import make_baseline
from audit.attribution.options import BaselineSpec

from ._eval import prepare, target_scores
from .spec import COMPLETENESS, MetricSpec


@dataclass
class CompletenessResult:
    delta: torch.Tensor  # [B] sum(attr) - (f(x) - f(baseline))
    output_gap: torch.Tensor  # [B] f(x) - f(baseline)
    spec: MetricSpec = field(default=COMPLETENESS)

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
