"""Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365).

(x - x') times the path integral of input gradients from the baseline x' to x, by Riemann or
Gauss-Legendre quadrature; reports the completeness error sum(attr) - (f(x) - f(x')) per sample
and, with ``ig_tolerance``, doubles the step count for samples whose error is still too large.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from audit.quadrature import IG_MAX_STEPS, IG_METHOD, IG_STEPS, IG_TOLERANCE, check_points, points_and_weights

from ..base import Evaluations, ExplainContext, Geometry, GradientMethod
from ..baselines import check_baseline, make_baseline
from ..options import (
    BLUR_SIGMA,
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
)

BASELINE = Option("baseline", None, "reference input: None (zeros), 'zeros', 'ones', 'blur', 'uniform', a number "
                  "or a tensor such as a dataset mean", check=check_baseline)


@dataclass
class IGDiagnostics:
    """Completeness error per sample and the number of steps each sample finally used."""

    delta: torch.Tensor
    steps: torch.Tensor
    baseline_scores: torch.Tensor
    input_scores: torch.Tensor


class IntegratedGradients(GradientMethod):
    name = "integrated_gradients"
    listing = 60
    label = "Integrated Gradients"
    paper = 'Sundararajan, Taly & Yan (2017). Axiomatic Attribution for Deep Networks. ICML.'
    # seed and blur_sigma: the 'uniform' and 'blur' baselines use them
    options = (IG_STEPS, IG_METHOD, BASELINE, IG_TOLERANCE, IG_MAX_STEPS, BLUR_SIGMA, SEED, *INFERENCE_PATH)
    diagnostics = ("completeness_delta", "ig_steps_used")

    def __init__(self) -> None:
        self.result: IGDiagnostics | None = None

    @classmethod
    def check_options(cls, opts: AttributionOptions) -> None:
        check_points(opts.ig_method, opts.ig_steps)

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        # the input's logits, the baseline's, and the path points (before any adaptive refinement)
        b = geometry.batch
        return Evaluations(forward=b * (opts.ig_steps + 2), backward=b * opts.ig_steps, expanded=b * (opts.ig_steps + 1))

    def diagnose(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {"completeness_delta": self.result.delta, "ig_steps_used": self.result.steps}

    def _integrate(
        self, ctx: ExplainContext, x: torch.Tensor, base: torch.Tensor, targets: torch.Tensor, steps: int
    ) -> torch.Tensor:
        alphas, weights = points_and_weights(ctx.options.ig_method, steps)
        a = alphas.to(device=x.device, dtype=torch.float32)
        w = weights.to(device=x.device, dtype=torch.float32)
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
        self.result = IGDiagnostics(
            delta=delta.detach(), steps=used, baseline_scores=base_scores, input_scores=input_scores
        )
        return attr
