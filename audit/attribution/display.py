"""The one display normalisation of the workbench: methods return raw maps, callers apply this.

Input-space maps are reduced over channels, then scaled by a high percentile of the magnitude and
clipped, so a few extreme pixels do not wash the rest of a heat map out.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

DisplayMode = Literal["abs", "signed", "positive"]


def normalize_for_display(
    attribution: torch.Tensor,
    *,
    mode: DisplayMode = "abs",
    percentile: float = 99.0,
) -> torch.Tensor:
    """Map raw attributions to [B, H, W] heat maps in [0, 1] (``abs``, ``positive``) or [-1, 1].

    ``attribution`` is [B, C, H, W] (channels are summed; ``abs`` sums magnitudes), [B, H, W] or
    [H, W]. Each map is divided by the ``percentile``-th percentile of its magnitude and clipped;
    an all-zero map stays zero.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    if mode not in ("abs", "signed", "positive"):
        raise ValueError(f"mode must be 'abs', 'signed' or 'positive', got {mode!r}")
    a = attribution.detach().float()
    if a.ndim == 2:
        a = a.unsqueeze(0)
    elif a.ndim == 4:
        a = a.abs().sum(1) if mode == "abs" else a.sum(1)
    elif a.ndim != 3:
        raise ValueError(f"expected [B, C, H, W], [B, H, W] or [H, W], got shape {tuple(attribution.shape)}")
    if mode == "abs":
        a = a.abs()
    elif mode == "positive":
        a = a.clamp_min(0.0)
    flat = a.abs().flatten(1)
    # kthvalue rather than quantile: no input-size limit, and the scale is an observed value
    k = max(1, min(flat.shape[1], math.ceil(percentile / 100.0 * flat.shape[1])))
    scale = flat.kthvalue(k, dim=1).values
    # Sparse maps can have a zero percentile while still having mass; fall back to the maximum.
    scale = torch.where(scale > 0, scale, flat.max(1).values)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1)
    lo = -1.0 if mode == "signed" else 0.0
    return (a / scale).clamp(lo, 1.0)
