"""Gradient x Input (Shrikumar et al. 2016, arXiv:1605.01713): input times its gradient.

Served by the shared pass, so it costs nothing beyond the gradient the other methods need.
"""

from __future__ import annotations

import torch

from ..base import ExplainContext, GradientMethod


class GradXInput(GradientMethod):
    name = "grad_x_input"
    listing = 20
    label = "Gradient × Input"
    paper = 'Shrikumar, Greenside, Shcherbina & Kundaje (2016). Not Just a Black Box: Learning Important Features Through Propagating Activation Differences. arXiv:1605.01713.'
    fused = True
    needs_input_grad = True

    def from_gradient(self, ctx: ExplainContext, grad: torch.Tensor) -> torch.Tensor:
        return grad * ctx.inputs.float()
