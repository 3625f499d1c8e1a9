"""Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365).

(x - x') times the path integral of input gradients from the baseline x' to x, by Riemann or
Gauss-Legendre quadrature; reports the completeness error sum(attr) - (f(x) - f(x')) per sample
and, with ``ig_tolerance``, doubles the step count for samples whose error is still too large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..base import ExplainContext, GradientMethod
from ..baselines import make_baseline


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights for integrating over the straight-line path."""
    n = steps
    if method == "riemann_left":
        return np.arange(n) / n, np.full(n, 1.0 / n)
    if method == "riemann_right":
        return np.arange(1, n + 1) / n, np.full(n, 1.0 / n)
    if method == "riemann_middle":
        return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return np.linspace(0.0, 1.0, n), w
    if method == "gausslegendre":
        pts, wts = np.polynomial.legendre.leggauss(n)
        return (pts + 1.0) / 2.0, wts / 2.0
    raise ValueError(f"unknown quadrature {method!r}")


@dataclass
class IGDiagnostics:
    """Completeness error per sample and the number of steps each sample finally used."""

    delta: torch.Tensor
    steps: torch.Tensor
    baseline_scores: torch.Tensor
    input_scores: torch.Tensor


class IntegratedGradients(GradientMethod):
    name = "integrated_gradients"

    def __init__(self) -> None:
        self.diagnostics: IGDiagnostics | None = None

    def _integrate(
        self, ctx: ExplainContext, x: torch.Tensor, base: torch.Tensor, targets: torch.Tensor, steps: int
    ) -> torch.Tensor:
        alphas, weights = quadrature(ctx.options.ig_method_canonical, steps)
        a = torch.as_tensor(alphas, dtype=torch.float32, device=x.device)
        w = torch.as_tensor(weights, dtype=torch.float32, device=x.device)
        diff = x - base
        total = torch.zeros_like(x)
        b_count = x.shape[0]
        sample_of = torch.arange(b_count, device=x.device).repeat_interleave(steps)
        step_of = torch.arange(steps, device=x.device).repeat(b_count)

        def make(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            b = sample_of[start:stop]
            alpha = a[step_of[start:stop]].view(-1, *([1] * (x.ndim - 1)))
            return base[b] + alpha * diff[b], targets[b]

        for start, stop, grads, _ in ctx.grads_over(b_count * steps, make):
            wt = w[step_of[start:stop]].view(-1, *([1] * (x.ndim - 1)))
            total.index_add_(0, sample_of[start:stop], grads * wt)
        return diff * total

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        opts = ctx.options
        x = ctx.inputs.float()
        base = make_baseline(opts.baseline, x, seed=opts.seed, blur_sigma=opts.blur_sigma)
        with torch.no_grad():
            base_scores = ctx.forward(base, heavy=True).gather(1, ctx.targets.view(-1, 1)).squeeze(1)
        input_scores = ctx.logits.gather(1, ctx.targets.view(-1, 1)).squeeze(1)
        steps = opts.ig_steps
        attr = self._integrate(ctx, x, base, ctx.targets, steps)
        used = torch.full((ctx.batch,), steps, dtype=torch.long)
        delta = attr.flatten(1).sum(1) - (input_scores - base_scores)
        if opts.ig_tolerance is not None:
            while True:
                todo = (delta.abs() > opts.ig_tolerance).nonzero().flatten()
                if todo.numel() == 0 or steps >= opts.ig_max_steps:
                    break
                steps = min(steps * 2, opts.ig_max_steps)
                sub = self._integrate(ctx, x[todo], base[todo], ctx.targets[todo], steps)
                attr[todo] = sub
                used[todo.cpu()] = steps
                delta[todo] = sub.flatten(1).sum(1) - (input_scores[todo] - base_scores[todo])
        self.diagnostics = IGDiagnostics(
            delta=delta.detach(), steps=used, baseline_scores=base_scores, input_scores=input_scores
        )
        return attr
