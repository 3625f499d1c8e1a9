"""Faithfulness metrics: deletion and insertion curves (Petsiuk et al. 2018) and infidelity
(Yeh et al. 2019). Each result carries its MetricSpec so reports know which way is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audit.attribution.baselines import make_baseline
from audit.attribution.memory import batch_for
from audit.attribution.base import fraction_range
from audit.attribution.options import BaselineSpec
from audit.attribution.planner import eval_mode

from ._eval import pixel_relevance, prepare, target_scores
from .spec import DELETION, INFIDELITY, INSERTION, MetricSpec


@dataclass
class CurveResult:
    """Target probability after each step (fractions of pixels moved) and the curve's area."""

    fractions: torch.Tensor  # [S + 1], from 0 to 1
    curves: torch.Tensor  # [B, S + 1]
    auc: torch.Tensor  # [B]
    spec: MetricSpec = field(default=DELETION)

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def _pixel_order(relevance: torch.Tensor, seed: int) -> torch.Tensor:
    """Position of each pixel in the most-relevant-first order, ties broken at random (seeded)."""
    b, n = relevance.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(b)]).to(relevance.device)
    shuffled = relevance.gather(1, perm)
    _, idx = torch.sort(shuffled, dim=1, descending=True, stable=True)
    order = perm.gather(1, idx)  # pixel indices, most relevant first
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(n, device=relevance.device).expand(b, n))
    return position


def _curve(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    attributions: torch.Tensor,
    *,
    steps: int,
    start: BaselineSpec,
    mode: str,
    reduce: str,
    seed: int,
    batch_size: int | None,
) -> CurveResult:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x, t = prepare(model, inputs, targets)
    b, c, h, w = x.shape
    if batch_size is None:
        batch_size = batch_for(c * h * w, device=x.device)
    relevance = pixel_relevance(attributions.to(x.device), b, (h, w), reduce)
    position = _pixel_order(relevance, seed)
    counts = torch.round(torch.linspace(0, h * w, steps + 1, device=x.device)).long()
    other = make_baseline(start, x, seed=seed)
    n_total = b * (steps + 1)
    probs = torch.empty(n_total, device=x.device)
    with eval_mode(model):
        for lo in range(0, n_total, batch_size):
            hi = min(n_total, lo + batch_size)
            idx = torch.arange(lo, hi, device=x.device)
            bi, si = idx // (steps + 1), idx % (steps + 1)
            moved = (position[bi] < counts[si].unsqueeze(1)).view(-1, 1, h, w)
            if mode == "deletion":
                batch = torch.where(moved, other[bi], x[bi])
            else:
                batch = torch.where(moved, x[bi], other[bi])
            probs[lo:hi] = target_scores(model, batch, t[bi], kind="prob", batch_size=batch_size)
    curves = probs.view(b, steps + 1)
    fractions = counts.float() / (h * w)
    auc = torch.trapezoid(curves, fractions.unsqueeze(0).expand_as(curves), dim=1)
    return CurveResult(
        fractions=fractions.cpu(), curves=curves.cpu(), auc=auc.cpu(),
        spec=DELETION if mode == "deletion" else INSERTION,
    )


def deletion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    attributions: torch.Tensor,
    *,
    steps: int = 20,
    baseline: BaselineSpec = None,
    reduce: str = "sum",
    seed: int = 0,
    batch_size: int | None = None,
) -> CurveResult:
    """Probability of the target as the most relevant pixels (all channels) are set to the
    baseline (default zeros), in ``steps`` equal steps. Lower AUC is better."""
    return _curve(model, inputs, targets, attributions, steps=steps, start=baseline, mode="deletion",
                  reduce=reduce, seed=seed, batch_size=batch_size)


def insertion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    attributions: torch.Tensor,
    *,
    steps: int = 20,
    canvas: BaselineSpec = "blur",
    reduce: str = "sum",
    seed: int = 0,
    batch_size: int | None = None,
) -> CurveResult:
    """Probability of the target as the most relevant pixels are copied onto ``canvas`` (default a
    blurred copy; "zeros" for a black one). Higher AUC is better."""
    return _curve(model, inputs, targets, attributions, steps=steps, start=canvas, mode="insertion",
                  reduce=reduce, seed=seed, batch_size=batch_size)


@dataclass
class InfidelityResult:
    values: torch.Tensor  # [B]
    spec: MetricSpec = field(default=INFIDELITY)

    @property
    def mean(self) -> float:
        return float(self.values.mean())


def infidelity(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    attributions: torch.Tensor,
    *,
    n_perturb: int = 32,
    noise_std: float = 0.1,
    normalize: bool = True,
    seed: int = 0,
    perturbations: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> InfidelityResult:
    """E[(I . Phi - (f(x) - f(x - I)))^2] over Gaussian perturbations I (Yeh et al. 2019).

    I ~ N(0, (noise_std * value range of x)^2); f is the target logit. With ``normalize`` the
    attributions are first scaled by the least-squares optimal beta. ``perturbations`` [B, n, C,
    H, W] replaces the random draw (to reproduce a run exactly). [B, H, W] maps are broadcast over
    channels.
    """
    x, t = prepare(model, inputs, targets)
    b = x.shape[0]
    phi = attributions.detach().float().to(x.device)
    if phi.ndim == 3:
        phi = phi.unsqueeze(1).expand_as(x)
    if phi.shape != x.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} do not match inputs {tuple(x.shape)}")
    if perturbations is None:
        if n_perturb < 1:
            raise ValueError("n_perturb must be >= 1")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn((b, n_perturb, *x.shape[1:]), generator=gen).to(x.device)
        perturbations = noise * (noise_std * fraction_range(x)).unsqueeze(1)
    else:
        perturbations = perturbations.to(x.device, torch.float32)
        if perturbations.ndim != 5 or perturbations.shape[0] != b or perturbations.shape[2:] != x.shape[1:]:
            raise ValueError("perturbations must have shape [B, n, C, H, W]")
    n = perturbations.shape[1]
    with eval_mode(model):
        f_x = target_scores(model, x, t, kind="logit", batch_size=batch_size)
        flat = (x.unsqueeze(1) - perturbations).reshape(b * n, *x.shape[1:])
        f_p = target_scores(model, flat, t.repeat_interleave(n), kind="logit", batch_size=batch_size).view(b, n)
    dot = (perturbations * phi.unsqueeze(1)).flatten(2).sum(2).double()
    diff = (f_x.unsqueeze(1) - f_p).double()
    if normalize:
        num = (dot * diff).sum(1)
        den = (dot * dot).sum(1)
        beta = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), torch.zeros_like(den))
        dot = dot * beta.unsqueeze(1)
    values = ((dot - diff) ** 2).mean(1)
    return InfidelityResult(values=values.float().cpu())
