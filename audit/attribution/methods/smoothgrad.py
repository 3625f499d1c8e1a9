"""SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825) and its squared and variance variants.

Gradients at noisy copies x + N(0, sigma^2), sigma = sg_stdev * (max - min of each input); the
mean (smoothgrad), mean of squares (smoothgrad_sq) or population variance (vargrad) of them.
Sample b's noise comes from its own generator, seeded from (seed, sample b's values).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..base import Evaluations, ExplainContext, Geometry, GradientMethod, fraction_range
from ..options import (
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    non_negative,
    positive_int,
)
from ..seeding import sample_seeds, torch_generator

SG_SAMPLES = Option("sg_samples", 25, "noisy copies per input", check=positive_int)
SG_STDEV = Option("sg_stdev", 0.15, "noise standard deviation as a fraction of each input's value range",
                  check=non_negative)


class NoiseSource:
    """Noise blocks [N, C, H, W], one per sample, each drawn from that sample's own generator."""

    def __init__(self, inputs: torch.Tensor, samples: int, sigma: torch.Tensor, seed: int) -> None:
        self.inputs = inputs
        self.samples = samples
        self.sigma = sigma
        self.seeds = sample_seeds(seed, inputs)
        self._current = -1
        self._block: torch.Tensor | None = None

    def block(self, b: int) -> torch.Tensor:
        if self._current != b or self._block is None:
            shape = (self.samples,) + tuple(self.inputs.shape[1:])
            noise = torch.randn(shape, generator=torch_generator(self.seeds[b]), dtype=torch.float32)
            self._block = noise.to(self.inputs.device) * self.sigma[b]
            self._current = b
        return self._block

    def make(self, start: int, stop: int, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        tgts = []
        for i in range(start, stop):
            b, n = divmod(i, self.samples)
            rows.append(self.inputs[b] + self.block(b)[n])
            tgts.append(targets[b])
        return torch.stack(rows), torch.stack(tgts)


class SmoothGrad(GradientMethod):
    name = "smoothgrad"
    listing = 30
    label = "SmoothGrad"
    paper = 'Smilkov, Thorat, Kim, Viegas & Wattenberg (2017). SmoothGrad: removing noise by adding noise. arXiv:1706.03825.'
    options = (SG_SAMPLES, SG_STDEV, SEED, *INFERENCE_PATH)
    stochastic = True
    aggregate: ClassVar[str] = "mean"

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        n = geometry.batch * opts.sg_samples
        return Evaluations(forward=n, backward=n, expanded=n)

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        n = ctx.options.sg_samples
        x = ctx.inputs.float()
        sigma = ctx.options.sg_stdev * fraction_range(x)
        source = NoiseSource(x, n, sigma, ctx.options.seed)
        first = torch.zeros_like(x)
        second = torch.zeros_like(x)
        index = torch.arange(ctx.batch, device=x.device).repeat_interleave(n)
        for start, stop, grads, _ in ctx.grads_over(
            ctx.batch * n, lambda s, e: source.make(s, e, ctx.targets)
        ):
            first.index_add_(0, index[start:stop], grads)
            if self.aggregate != "mean":
                second.index_add_(0, index[start:stop], grads * grads)
        mean = first / n
        if self.aggregate == "mean":
            return mean
        if self.aggregate == "square":
            return second / n
        return (second / n - mean * mean).clamp_min(0.0)


class SmoothGradSquared(SmoothGrad):
    name = "smoothgrad_sq"
    listing = 40
    label = "SmoothGrad²"
    paper = 'Hooker, Erhan, Kindermans & Kim (2019). A Benchmark for Interpretability Methods in Deep Neural Networks. NeurIPS.'
    aggregate = "square"


class VarGrad(SmoothGrad):
    name = "vargrad"
    listing = 50
    label = "VarGrad"
    paper = 'Adebayo, Gilmer, Goodfellow & Kim (2018). Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter Values. ICLR Workshop.'
    aggregate = "variance"
