"""Score-CAM (Wang et al. 2020, arXiv:1910.01279): channel weights from the model's response to
the input masked by each upsampled, min-max scaled channel; no gradients.

``scorecam_weights='channel_softmax'`` (default) softmaxes the masked target logits over channels;
``'class_probability'`` uses the target's softmax probability of each masked input directly.
``scorecam_max_channels`` scores only the k channels with the highest mean activation per sample
(the others get weight 0), trading exactness for k instead of C forwards per input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base import CamMethod, Evaluations, ExplainContext, Geometry
from ..options import (
    INFERENCE_PATH,
    AttributionOptions,
    Option,
    one_of,
    optional_positive_int,
)

SCORECAM_WEIGHTS = Option("scorecam_weights", "channel_softmax", "'channel_softmax' of the masked target logits "
                          "over channels, or the masked inputs' 'class_probability'",
                          check=one_of("channel_softmax", "class_probability"))
SCORECAM_MAX_CHANNELS = Option("scorecam_max_channels", None, "score only the k most active channels per sample "
                               "(None: all)", check=optional_positive_int)


class ScoreCAM(CamMethod):
    name = "scorecam"
    listing = 100
    label = "Score-CAM"
    paper = 'Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu (2020). Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks. CVPR Workshops.'
    options = (SCORECAM_WEIGHTS, SCORECAM_MAX_CHANNELS, *INFERENCE_PATH)

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        # the layer's channel count is known only after a forward; None counts no masked inputs
        channels = geometry.layer_channels or 0
        if opts.scorecam_max_channels is not None:
            channels = min(channels, opts.scorecam_max_channels)
        masked = geometry.batch * channels
        return Evaluations(forward=geometry.batch + masked, backward=0, expanded=masked)

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        b, channels = acts.shape[:2]
        limit = ctx.options.scorecam_max_channels
        if limit is not None and limit < channels:
            chosen = acts.mean(dim=(2, 3)).topk(limit, dim=1).indices  # [B, k]
        else:
            chosen = torch.arange(channels, device=acts.device).expand(b, channels)
        k = chosen.shape[1]
        size = tuple(ctx.inputs.shape[-2:])
        x = ctx.inputs.float()
        kind = "logit" if ctx.options.scorecam_weights == "channel_softmax" else "prob"

        def make(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.arange(start, stop, device=acts.device)
            bi, ki = idx // k, chosen[idx // k, idx % k]
            maps = F.interpolate(
                acts[bi, ki].unsqueeze(1), size=size, mode="bilinear", align_corners=False
            )
            flat = maps.flatten(1)
            lo = flat.min(1).values.view(-1, 1, 1, 1)
            hi = flat.max(1).values.view(-1, 1, 1, 1)
            span = hi - lo
            masks = torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1.0), 0.0)
            return x[bi] * masks, ctx.targets[bi]

        scores = ctx.scores_over(b * k, make, kind=kind).view(b, k)
        if kind == "logit":
            scores = scores.softmax(dim=1)
        return torch.zeros(b, channels, device=acts.device).scatter_(1, chosen, scores)
