"""Robustness of explanations: max-sensitivity (Yeh et al. 2019) and the seed stability of
stochastic methods (SmoothGrad, RISE, LIME, SHAP)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from audit.attribution import attribute, spearman

from ._eval import prepare
from .base import Explainer, QualityMetric, Scores
from .faithfulness import YEH

Target = torch.Tensor | int | None
NEEDS_EXPLAINER = "max-sensitivity re-explains perturbed inputs: give MaxSensitivity(explainer=...)"
NEEDS_METHOD = "seed stability reruns one engine method: give SeedStability(method=...)"


class MaxSensitivity(QualityMetric):
    """Re-explains perturbed inputs with the ``explainer`` setting; ``maps`` are not read."""

    name = "max_sensitivity"
    listing = 90
    label = "Max-sensitivity"
    paper = YEH
    direction = "lower"
    category = "robustness"
    value_range = (0.0, float("inf"))
    description = "largest relative change of the explanation under small uniform input perturbations"
    settings = {"explainer": None, "radius": 0.02, "n_samples": 10, "seed": 0, "perturbations": None}

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: Target, maps: Any, **data: Any) -> Scores:
        config = dict(self.config)
        explainer = config.pop("explainer")
        if explainer is None:
            raise ValueError(NEEDS_EXPLAINER)
        return max_sensitivity(explainer, model, inputs, targets, **config)


class SeedStability(QualityMetric):
    """Reruns the ``method`` setting (an engine method name) once per seed; ``maps`` are not read."""

    name = "seed_stability"
    listing = 100
    label = "Seed stability"
    paper = ("Bansal, Agarwal & Nguyen (2020). SAM: The Sensitivity of Attribution Methods to Hyperparameters. "
             "CVPR.")
    direction = "higher"
    category = "robustness"
    value_range = (-1.0, 1.0)
    description = "mean rank correlation between maps of a stochastic method computed with different seeds"
    settings = {"method": None, "seeds": (0, 1, 2, 3), "layer": None, "options": {}}

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: Target, maps: Any,
                **data: Any) -> "StabilityResult":
        config = dict(self.config)
        method, options = config.pop("method"), config.pop("options")
        if method is None:
            raise ValueError(NEEDS_METHOD)
        return stability(model, inputs, targets, method, **config, **options)


def max_sensitivity(
    explainer: Explainer,
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int = 0,
    perturbations: torch.Tensor | None = None,
) -> Scores:
    """max_delta ||Phi(x + delta) - Phi(x)|| / ||Phi(x)||, delta uniform in the L-inf ball of
    ``radius`` (``perturbations`` [B, n, C, H, W] replaces the draw). Targets are held fixed."""
    x, t = prepare(model, inputs, targets)
    b = x.shape[0]
    if perturbations is None:
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        perturbations = ((torch.rand((b, n_samples, *x.shape[1:]), generator=gen) * 2 - 1) * radius).to(x.device)
    n = perturbations.shape[1]
    base = explainer(model, x, t).detach().float().flatten(1)
    base_norm = base.norm(dim=1)
    base_norm = torch.where(base_norm > 0, base_norm, torch.ones_like(base_norm))
    worst = torch.zeros(b, device=base.device)
    for k in range(n):
        moved = explainer(model, x + perturbations[:, k].to(x), t).detach().float().flatten(1)
        worst = torch.maximum(worst, (moved - base).norm(dim=1) / base_norm)
    return Scores(worst.cpu(), MaxSensitivity)


@dataclass
class StabilityResult:
    """Spread of a stochastic method across seeds."""

    method: str
    seeds: list[int]
    rank_corr: torch.Tensor  # [B] mean pairwise Spearman between seeds
    relative_std: torch.Tensor  # [B] mean per-pixel std across seeds / mean |map|
    spec: type[QualityMetric] = field(default=SeedStability)

    @property
    def values(self) -> torch.Tensor:
        return self.rank_corr

    @property
    def mean_rank_corr(self) -> float:
        return float(self.rank_corr.mean())


def stability(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    method: str,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
    layer: nn.Module | str | None = None,
    **options: object,
) -> StabilityResult:
    """Rerun ``method`` with each seed and report how much the maps move."""
    if len(seeds) < 2:
        raise ValueError("stability needs at least two seeds")
    x, t = prepare(model, inputs, targets)
    runs = [attribute(model, x, t, [method], layer, **{**options, "seed": s})[method].float() for s in seeds]  # type: ignore[list-item]
    stack = torch.stack([r.flatten(1) for r in runs])  # [S, B, D]
    corrs = [spearman(stack[i], stack[j]) for i, j in itertools.combinations(range(len(seeds)), 2)]
    rank_corr = torch.stack(corrs).mean(0).float()
    mean_abs = stack.abs().mean(dim=(0, 2)).clamp_min(1e-12)
    rel = stack.std(dim=0, unbiased=False).mean(1) / mean_abs
    return StabilityResult(method, list(seeds), rank_corr.cpu(), rel.cpu())
