"""CAM (Zhou et al. 2016, arXiv:1512.04150): for a global-average-pooling model, the channel
weights are the final linear layer's row for the target class.

The pooled feature maps and the linear layer are found automatically and verified numerically
(logits = W . mean(A) + b) during the shared pass; models without that head are refused.
"""

from __future__ import annotations

import torch

from ..base import CamMethod, ExplainContext


class CAM(CamMethod):
    name = "cam"
    listing = 70
    label = "CAM"
    needs_layer = False
    needs_cam_features = True

    def features(self, ctx: ExplainContext) -> torch.Tensor:
        shared = ctx.shared
        if shared is None:
            raise RuntimeError("cam needs the shared pass, which did not run")
        if shared.cam_features is None:
            raise ValueError(shared.cam_error or "CAM features were not found")
        return shared.cam_features

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        weight = ctx.shared.cam_weight  # type: ignore[union-attr]
        return weight[ctx.targets]
