"""Reference inputs ("baselines") for path and perturbation methods, and a Gaussian blur.

A baseline is given as None (zeros), a name (zeros, ones, blur, uniform), a number, or a tensor
such as a dataset mean that is broadcast to the inputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .options import BASELINE_NAMES, BaselineSpec
from .seeding import sample_seeds, torch_generator

BAD_BASELINE = (
    "baseline {spec!r} not understood: use None (zeros), one of {names}, a number, or a tensor "
    "broadcastable to the inputs ([C], [C, H, W], [1, C, H, W] or [B, C, H, W])"
)


def default_blur_sigma(height: int, width: int) -> float:
    """A blur that removes object detail but keeps colour layout: 1/16 of the shorter side."""
    return max(1.0, min(height, width) / 16.0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] with reflect padding (kernel radius 3 sigma)."""
    if sigma <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    radius = max(1, int(math.ceil(3 * sigma)))
    # Reflect padding needs radius < size; clamp so tiny images still blur.
    radius = min(radius, h - 1, w - 1) if min(h, w) > 1 else 0
    if radius == 0:
        return x.clone()
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(coords**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(one: torch.Tensor) -> torch.Tensor:
        out = F.pad(one, (radius, radius, 0, 0), mode="reflect")
        out = F.conv2d(out, kx, groups=c)
        out = F.pad(out, (0, 0, radius, radius), mode="reflect")
        return F.conv2d(out, ky, groups=c)

    # One sample per convolution: conv kernels round differently for different batch sizes, and a
    # reference input must not depend on which other samples share the batch.
    return torch.cat([blur(x[i : i + 1]) for i in range(x.shape[0])])


def check_baseline(name: str, spec: Any) -> None:
    """Option check: a baseline spec of a kind ``make_baseline`` understands."""
    if spec is None or isinstance(spec, torch.Tensor):
        return
    if isinstance(spec, bool) or not isinstance(spec, (str, int, float)):
        raise TypeError(f"option {name}: " + BAD_BASELINE.format(spec=type(spec).__name__, names=BASELINE_NAMES))
    if isinstance(spec, str) and spec not in BASELINE_NAMES:
        raise ValueError(f"option {name}: " + BAD_BASELINE.format(spec=spec, names=BASELINE_NAMES))


def make_baseline(
    spec: BaselineSpec,
    inputs: torch.Tensor,
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
) -> torch.Tensor:
    """Materialise ``spec`` as a tensor with the shape, dtype and device of ``inputs``."""
    if spec is None or (isinstance(spec, str) and spec == "zeros"):
        return torch.zeros_like(inputs)
    if isinstance(spec, bool):
        raise TypeError(BAD_BASELINE.format(spec=spec, names=BASELINE_NAMES))
    if isinstance(spec, (int, float)):
        return torch.full_like(inputs, float(spec))
    if isinstance(spec, str):
        if spec == "ones":
            return torch.ones_like(inputs)
        if spec == "blur":
            sigma = blur_sigma or default_blur_sigma(*inputs.shape[-2:])
            return gaussian_blur(inputs, sigma)
        if spec == "uniform":
            # Noise within each sample's own value range, so normalised inputs stay in-distribution;
            # drawn per sample from (seed, the sample), so it does not depend on the batch.
            seeds = sample_seeds(seed, inputs, salt="uniform-baseline")
            u = torch.stack(
                [torch.rand(inputs.shape[1:], generator=torch_generator(s), dtype=torch.float32) for s in seeds]
            ).to(inputs)
            flat = inputs.flatten(1)
            lo = flat.min(1).values.view(-1, *([1] * (inputs.ndim - 1)))
            hi = flat.max(1).values.view(-1, *([1] * (inputs.ndim - 1)))
            return lo + (hi - lo) * u
        raise ValueError(BAD_BASELINE.format(spec=spec, names=BASELINE_NAMES))
    if isinstance(spec, torch.Tensor):
        ref = spec.to(device=inputs.device, dtype=inputs.dtype)
        if ref.ndim == 1 and ref.shape[0] == inputs.shape[1]:
            ref = ref.view(1, -1, 1, 1)
        elif ref.ndim == inputs.ndim - 1:
            ref = ref.unsqueeze(0)
        try:
            return torch.broadcast_to(ref, inputs.shape).clone()
        except RuntimeError as exc:
            raise ValueError(BAD_BASELINE.format(spec=tuple(spec.shape), names=BASELINE_NAMES)) from exc
    raise TypeError(BAD_BASELINE.format(spec=type(spec).__name__, names=BASELINE_NAMES))
