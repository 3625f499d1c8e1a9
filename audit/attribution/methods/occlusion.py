"""Occlusion (Zeiler & Fergus 2014, arXiv:1311.2901): the drop in the target logit when a window
(all channels) is replaced by the baseline, averaged over the windows covering each pixel.

Windows start at 0, stride, ... until one reaches the border (the last one may be clipped), so
every pixel is covered; windows are evaluated many per forward, batched under no_grad.
"""

from __future__ import annotations

import torch

from ..base import ExplainContext, PerturbationMethod
from ..baselines import make_baseline


def window_masks(height: int, width: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """Boolean masks [n_windows, H, W]; ceil((size - window) / stride) + 1 starts per axis."""
    if window > height or window > width:
        raise ValueError(
            f"occlusion_window={window} exceeds the input size {height}x{width}; use a smaller window"
        )
    ys = [i * stride for i in range(-(-(height - window) // stride) + 1)]
    xs = [i * stride for i in range(-(-(width - window) // stride) + 1)]
    masks = torch.zeros(len(ys) * len(xs), height, width, dtype=torch.bool, device=device)
    i = 0
    for y in ys:
        for x in xs:
            masks[i, y : y + window, x : x + window] = True
            i += 1
    return masks


class Occlusion(PerturbationMethod):
    name = "occlusion"

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        opts = ctx.options
        x = ctx.inputs.float()
        h, w = x.shape[-2:]
        masks = window_masks(h, w, opts.occlusion_window, opts.occlusion_stride, x.device)
        n = masks.shape[0]
        base = make_baseline(opts.occlusion_baseline, x, seed=opts.seed, blur_sigma=opts.blur_sigma)

        def make(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.arange(start, stop, device=x.device)
            bi, wi = idx // n, idx % n
            m = masks[wi].unsqueeze(1)
            return torch.where(m, base[bi], x[bi]), ctx.targets[bi]

        occluded = ctx.scores_over(ctx.batch * n, make).view(ctx.batch, n)
        reference = ctx.logits.gather(1, ctx.targets.view(-1, 1))
        drop = reference - occluded
        flat = masks.view(n, -1).float()
        count = flat.sum(0)
        total = drop @ flat
        per_pixel = torch.where(count > 0, total / count.clamp_min(1.0), torch.zeros_like(total))
        return per_pixel.view(ctx.batch, 1, h, w).expand_as(x).contiguous()
