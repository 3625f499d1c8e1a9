"""Grad-CAM++ (Chattopadhyay et al. 2018, arXiv:1710.11063), closed form from first-order grads.

With Y = exp(S) and a piecewise-linear network, the 2nd/3rd derivatives of Y are exp(S) g^2 and
exp(S) g^3, so alpha = g^2 / (2 g^2 + sum_ab(A) g^3) (the exp(S) factors cancel) and
w_k = sum_ij alpha * relu(dY/dA) = exp(S) * sum_ij alpha * relu(g). exp(S) is one positive factor
per sample; it is applied only when ``gradcam_pp_exp_score`` is set, since it overflows easily.
"""

from __future__ import annotations

import torch

from ..base import CamMethod, ExplainContext
from ..options import Option, boolean

GRADCAM_PP_EXP_SCORE = Option("gradcam_pp_exp_score", False, "multiply each map by exp(target logit), the "
                              "paper's exponential score (overflows for large logits)", check=boolean)


class GradCAMPlusPlus(CamMethod):
    name = "gradcam_pp"
    listing = 90
    label = "Grad-CAM++"
    paper = 'Chattopadhyay, Sarkar, Howlader & Balasubramanian (2018). Grad-CAM++: Generalized Gradient-Based Visual Explanations for Deep Convolutional Networks. WACV.'
    options = (GRADCAM_PP_EXP_SCORE,)
    needs_layer_grad = True

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        g = ctx.shared.layer_grad  # type: ignore[union-attr]
        g2 = g * g
        g3 = g2 * g
        act_sum = acts.sum(dim=(2, 3), keepdim=True)
        denom = 2 * g2 + act_sum * g3
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        alpha = torch.where((g != 0) & (denom != 0), g2 / safe, torch.zeros_like(g))
        weights = (alpha * torch.relu(g)).sum(dim=(2, 3))
        if ctx.options.gradcam_pp_exp_score:
            score = ctx.logits.gather(1, ctx.targets.view(-1, 1)).double()
            factor = torch.exp(score)
            if not torch.isfinite(factor).all():
                raise ValueError(
                    "exp(score) overflows for these logits; set gradcam_pp_exp_score=False "
                    "(the factor only rescales each map)"
                )
            weights = (weights.double() * factor).float()
        return weights
