"""CAM (Zhou et al. 2016, arXiv:1512.04150): for a global-average-pooling model, the channel
weights are the final linear layer's row for the target class.

The pooled feature maps and the linear layer are found automatically and verified numerically
(logits = W . mean(A) + b) during the shared pass; models without that head are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import CamMethod, ExplainContext, MethodNotApplicable
from ..layers import global_pool_modules, linear_modules
from ..shared_pass import NOT_GAP_MODEL


class CAM(CamMethod):
    name = "cam"
    listing = 70
    label = "CAM"
    paper = 'Zhou, Khosla, Lapedriza, Oliva & Torralba (2016). Learning Deep Features for Discriminative Localization. CVPR.'
    needs_layer = False
    needs_cam_features = True

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        # Necessary, not sufficient: the shared pass verifies logits = W . mean(A) + b numerically.
        return bool(global_pool_modules(model)) and bool(linear_modules(model))

    @classmethod
    def not_applicable_reason(cls, model: nn.Module) -> str | None:
        hooks = cls.hook_reason(model)
        if hooks is not None:
            return hooks
        return None if cls.applies_to(model) else NOT_GAP_MODEL.format(model=type(model).__name__)

    def features(self, ctx: ExplainContext) -> torch.Tensor:
        shared = ctx.shared
        if shared is None:
            raise RuntimeError("cam needs the shared pass, which did not run")
        if shared.cam_features is None:
            raise MethodNotApplicable(shared.cam_error or "CAM features were not found")
        return shared.cam_features

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        weight = ctx.shared.cam_weight  # type: ignore[union-attr]
        return weight[ctx.targets]
