"""SHAP values by expected gradients (Erion et al. 2021; Lundberg & Lee 2017, the estimator of
``shap.GradientExplainer``): gradients at random points between each input and random references,
times the input's difference from that reference, averaged.

For sample b, draw k = 1..N: a reference r_k uniformly from the references, then t_k ~ U(0, 1);
phi_b = mean_k grad(x_b') * (x_b - r_k) at x_b' = r_k + t_k (x_b - r_k). The draws come from
sample b's own generator (seeded from (seed, x_b), in the order shap's estimator makes them) and
the default references (zeros and x_b blurred) are its own, so no sample depends on its batch.
``shap_background`` [N, C, H, W] (e.g. a reference set) replaces the default references.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..base import Evaluations, ExplainContext, Geometry, GradientMethod
from ..baselines import default_blur_sigma, gaussian_blur
from ..options import (
    BLUR_SIGMA,
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    positive_int,
)
from ..seeding import sample_seeds


def _check_background(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, torch.Tensor) or value.ndim != 4):
        raise TypeError(f"option {name} must be a tensor [N, C, H, W] of reference inputs or None")


SHAP_SAMPLES = Option("shap_samples", 50, "gradient samples per input", check=positive_int)
SHAP_BACKGROUND = Option("shap_background", None, "reference inputs [N, C, H, W] (None: zeros and the input "
                         "blurred)", check=_check_background)


def draws(seed: int, references: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference indices and path fractions for one sample: (choice, uniform) per draw, in turn."""
    rng = np.random.RandomState(seed % 2**32)
    index = np.empty(samples, dtype=np.int64)
    frac = np.empty(samples, dtype=np.float64)
    for k in range(samples):
        index[k] = rng.choice(references)
        frac[k] = rng.uniform()
    return index, frac


class SHAP(GradientMethod):
    name = "shap"
    listing = 140
    label = "SHAP"
    paper = 'Lundberg & Lee (2017). A Unified Approach to Interpreting Model Predictions. NeurIPS.'
    # blur_sigma: the default references include the blurred input
    options = (SHAP_SAMPLES, SHAP_BACKGROUND, BLUR_SIGMA, SEED, *INFERENCE_PATH)
    stochastic = True

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        n = geometry.batch * opts.shap_samples
        return Evaluations(forward=n, backward=n, expanded=n)

    def references(self, ctx: ExplainContext, x: torch.Tensor) -> torch.Tensor:
        """[B, R, C, H, W]: each sample's own references."""
        background = ctx.options.shap_background
        if background is not None:
            background = background.to(device=x.device, dtype=x.dtype)
            if background.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"shap_background must have shape [N, {', '.join(map(str, x.shape[1:]))}], "
                    f"got {tuple(background.shape)}"
                )
            return background.unsqueeze(0).expand(x.shape[0], *background.shape)
        sigma = ctx.options.blur_sigma or default_blur_sigma(*x.shape[-2:])
        return torch.stack([torch.zeros_like(x), gaussian_blur(x, sigma)], dim=1)

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        x = ctx.inputs.float()
        n = ctx.options.shap_samples
        refs = self.references(ctx, x)
        picks, fracs = [], []
        for seed in sample_seeds(ctx.options.seed, x):
            index, frac = draws(seed, refs.shape[1], n)
            picks.append(torch.as_tensor(index))
            fracs.append(torch.as_tensor(frac, dtype=torch.float32))
        pick = torch.stack(picks).flatten().to(x.device)  # sample-major, [B * n]
        frac = torch.stack(fracs).flatten().to(x.device)
        sample_of = torch.arange(ctx.batch, device=x.device).repeat_interleave(n)
        shape = (-1, *([1] * (x.ndim - 1)))

        def make(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            b = sample_of[start:stop]
            ref = refs[b, pick[start:stop]]
            t = frac[start:stop].view(shape)
            return t * x[b] + (1 - t) * ref, ctx.targets[b]

        total = torch.zeros_like(x)
        for start, stop, grads, _ in ctx.grads_over(ctx.batch * n, make):
            b = sample_of[start:stop]
            total.index_add_(0, b, grads * (x[b] - refs[b, pick[start:stop]]))
        return total / n
