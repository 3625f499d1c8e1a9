"""Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391): channel weights are spatially averaged
gradients of the target logit with respect to the layer's maps."""

from __future__ import annotations

import torch

from ..base import CamMethod, ExplainContext


class GradCAM(CamMethod):
    name = "gradcam"
    listing = 80
    label = "Grad-CAM"
    paper = 'Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra (2017). Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization. ICCV.'
    needs_layer_grad = True

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        grads = ctx.shared.layer_grad  # type: ignore[union-attr]
        return grads.mean(dim=(2, 3))
