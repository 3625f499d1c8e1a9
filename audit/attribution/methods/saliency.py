"""Saliency (Simonyan et al. 2014, arXiv:1312.6034): the input gradient of the target logit.

Served by the shared pass; ``saliency_abs`` (default True, as in the paper) takes its magnitude.
"""

from __future__ import annotations

import torch

from ..base import ExplainContext, GradientMethod
from ..options import Option, boolean

SALIENCY_ABS = Option("saliency_abs", True, "take the gradient's magnitude (as in the paper)", check=boolean)


class Saliency(GradientMethod):
    name = "saliency"
    listing = 10
    label = "Saliency"
    paper = 'Simonyan, Vedaldi & Zisserman (2014). Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps. ICLR Workshop.'
    options = (SALIENCY_ABS,)
    fused = True
    needs_input_grad = True

    def from_gradient(self, ctx: ExplainContext, grad: torch.Tensor) -> torch.Tensor:
        return grad.abs() if ctx.options.saliency_abs else grad.clone()
