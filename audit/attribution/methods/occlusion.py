"""Occlusion (Zeiler & Fergus 2014, arXiv:1311.2901): the drop in the target logit when a window
(all channels) is replaced by the baseline, averaged over the windows covering each pixel.

Windows start at 0, stride, ... until one reaches the border (the last one may be clipped), so
every pixel is covered; windows are evaluated many per forward, batched under no_grad.
"""

from __future__ import annotations

import logging

import torch

from ..base import Evaluations, ExplainContext, Geometry, PerturbationMethod
from ..baselines import check_baseline, make_baseline
from ..options import (
    BLUR_SIGMA,
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    positive_int,
)

log = logging.getLogger(__name__)

OCCLUSION_WINDOW = Option("occlusion_window", 16, "side of the square window (pixels)", check=positive_int)
OCCLUSION_STRIDE = Option("occlusion_stride", 16, "step between window starts (pixels)", check=positive_int)
OCCLUSION_BASELINE = Option("occlusion_baseline", 0.0, "what fills the window (a baseline spec: number, "
                            "'blur', 'uniform', tensor, ...)", check=check_baseline)


def window_starts(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners, row by row; ceil((size - window) / stride) + 1 starts per axis."""
    if window > height or window > width:
        raise ValueError(
            f"occlusion_window={window} exceeds the input size {height}x{width}; use a smaller window"
        )
    ys = [i * stride for i in range(-(-(height - window) // stride) + 1)]
    xs = [i * stride for i in range(-(-(width - window) // stride) + 1)]
    return [(y, x) for y in ys for x in xs]


def window_masks(height: int, width: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """Boolean masks [n_windows, H, W], in ``window_starts`` order (the last ones may be clipped)."""
    starts = window_starts(height, width, window, stride)
    masks = torch.zeros(len(starts), height, width, dtype=torch.bool, device=device)
    for i, (y, x) in enumerate(starts):
        masks[i, y : y + window, x : x + window] = True
    return masks


def window_count(height: int, width: int, window: int, stride: int) -> int:
    if window > height or window > width:
        return 0
    return (-(-(height - window) // stride) + 1) * (-(-(width - window) // stride) + 1)


class Occlusion(PerturbationMethod):
    name = "occlusion"
    listing = 110
    label = "Occlusion"
    paper = 'Zeiler & Fergus (2014). Visualizing and Understanding Convolutional Networks. ECCV.'
    # seed and blur_sigma: the 'uniform' and 'blur' fills use them
    options = (OCCLUSION_WINDOW, OCCLUSION_STRIDE, OCCLUSION_BASELINE, BLUR_SIGMA, SEED, *INFERENCE_PATH)

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        windows = geometry.batch * window_count(
            geometry.height, geometry.width, opts.occlusion_window, opts.occlusion_stride
        )
        return Evaluations(forward=geometry.batch + windows, backward=0, expanded=windows)

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        opts = ctx.options
        x = ctx.inputs.float()
        h, w = x.shape[-2:]
        masks = window_masks(h, w, opts.occlusion_window, opts.occlusion_stride, x.device)
        n = masks.shape[0]
        base = make_baseline(opts.occlusion_baseline, x, seed=opts.seed, blur_sigma=opts.blur_sigma)

        occluded = None
        group = ctx.incremental_images()
        if group:
            counted = ctx.counter.snapshot()
            try:
                occluded = self._local(ctx, group, x, base, masks)
            except Exception as exc:  # noqa: BLE001 - a graph the crop path misreads: full images, same map
                log.warning("incremental occlusion failed (%s: %s); evaluating whole images", type(exc).__name__, exc)
            if occluded is None:
                ctx.drop_incremental(counted)
        if occluded is None:

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

    @staticmethod
    def _local(ctx: ExplainContext, group: int, x: torch.Tensor, base: torch.Tensor,
               masks: torch.Tensor) -> torch.Tensor | None:
        """Occluded scores [B, n_windows], each window evaluated as a crop (a window-sized square,
        moved inside the image where a clipped window would leave it) on an incremental copy holding
        ``group`` images at a time; None when the copy cannot be set up."""
        opts = ctx.options
        h, w = x.shape[-2:]
        size = opts.occlusion_window
        corners = [(min(y, h - size), min(c, w - size))
                   for y, c in window_starts(h, w, size, opts.occlusion_stride)]
        n = len(corners)
        parts = []
        for first in range(0, ctx.batch, group):
            last = min(ctx.batch, first + group)
            model = ctx.incremental(first, last)
            if model is None:
                return None

            def make(start: int, stop: int, first: int = first) -> tuple[tuple[list[int], torch.Tensor, list[int],
                                                                                list[int]], torch.Tensor]:
                image = [k // n for k in range(start, stop)]  # within the group
                oy = [corners[k % n][0] for k in range(start, stop)]
                ox = [corners[k % n][1] for k in range(start, stop)]
                crops = torch.stack([
                    torch.where(masks[k % n, y:y + size, c:c + size], base[first + b, :, y:y + size, c:c + size],
                                x[first + b, :, y:y + size, c:c + size])
                    for k, b, y, c in zip(range(start, stop), image, oy, ox)
                ])
                return (image, crops, oy, ox), ctx.targets[[first + b for b in image]]

            parts.append(ctx.scores_over((last - first) * n, make, on=model).view(last - first, n))
        return torch.cat(parts)
