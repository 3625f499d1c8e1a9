"""SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825) and its squared and variance variants.

Gradients at noisy copies x + N(0, sigma^2), sigma = sg_stdev * (max - min of each input); the
mean (smoothgrad), mean of squares (smoothgrad_sq) or population variance (vargrad) of them.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..base import ExplainContext, GradientMethod, fraction_range


class NoiseSource:
    """Noise for sample b is drawn as one [N, C, H, W] block in order b = 0, 1, ..., so the draws
    do not depend on how evaluations are batched."""

    def __init__(self, inputs: torch.Tensor, samples: int, sigma: torch.Tensor, seed: int) -> None:
        self.inputs = inputs
        self.samples = samples
        self.sigma = sigma
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self._current = -1
        self._block: torch.Tensor | None = None

    def block(self, b: int) -> torch.Tensor:
        while self._current < b:
            self._current += 1
            shape = (self.samples,) + tuple(self.inputs.shape[1:])
            noise = torch.randn(shape, generator=self.gen, dtype=torch.float32)
            self._block = noise.to(self.inputs.device) * self.sigma[self._current]
        if self._block is None or self._current != b:
            raise RuntimeError("noise blocks must be requested in sample order")
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
    aggregate: ClassVar[str] = "mean"

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
    aggregate = "square"


class VarGrad(SmoothGrad):
    name = "vargrad"
    aggregate = "variance"
