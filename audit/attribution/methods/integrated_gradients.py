"""Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365).

(x - x') times the path integral of input gradients from the baseline x' to x, by Riemann or
Gauss-Legendre quadrature; reports the completeness error sum(attr) - (f(x) - f(x')) per sample
and, with ``ig_tolerance``, doubles the step count for samples whose error is still too large.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

from ..base import Evaluations, ExplainContext, Geometry, GradientMethod
from ..baselines import check_baseline, make_baseline
from ..options import (
    BLUR_SIGMA,
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    optional_positive,
    positive_int,
)

IGMethod = Literal[
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"
]
IG_METHODS: tuple[str, ...] = get_args(IGMethod)
IG_METHOD_ALIASES = {
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
    "trapezoid": "riemann_trapezoid",
    "gauss_legendre": "gausslegendre",
    "gl": "gausslegendre",
}
UNKNOWN_IG_METHOD = "unknown ig_method {name!r}; choose from: {valid}"


def canonical_ig_method(name: str) -> str:
    return IG_METHOD_ALIASES.get(name, name)


def _check_ig_method(name: str, value: Any) -> None:
    if not isinstance(value, str) or canonical_ig_method(value) not in IG_METHODS:
        raise ValueError(UNKNOWN_IG_METHOD.format(name=value, valid=", ".join(IG_METHODS + tuple(IG_METHOD_ALIASES))))


IG_STEPS = Option("ig_steps", 50, "quadrature points on the path", check=positive_int)
IG_METHOD = Option("ig_method", "gausslegendre", "quadrature rule", check=_check_ig_method)
BASELINE = Option("baseline", None, "reference input: None (zeros), 'zeros', 'ones', 'blur', 'uniform', a number "
                  "or a tensor such as a dataset mean", check=check_baseline)
IG_TOLERANCE = Option("ig_tolerance", None, "double the steps of samples whose completeness error exceeds this "
                      "(None: fixed steps)", check=optional_positive)
IG_MAX_STEPS = Option("ig_max_steps", 512, "step cap of the adaptive refinement", check=positive_int)


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
        if canonical_ig_method(opts.ig_method) == "riemann_trapezoid" and opts.ig_steps < 2:
            raise ValueError("ig_method='riemann_trapezoid' needs ig_steps >= 2")

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
        alphas, weights = quadrature(canonical_ig_method(ctx.options.ig_method), steps)
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
        self.result = IGDiagnostics(
            delta=delta.detach(), steps=used, baseline_scores=base_scores, input_scores=input_scores
        )
        return attr
