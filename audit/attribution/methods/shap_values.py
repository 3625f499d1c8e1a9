"""SHAP via expected gradients (``shap.GradientExplainer``, Lundberg & Lee 2017; Erion et al.
2021): gradients at random points between each input and random references, times the difference.

Chosen because it runs on torch models directly (CPU or CUDA), scales with ``shap_samples``
backward passes per input like SmoothGrad, and is reproducible through its ``rseed``. References:
``shap_background`` [N, C, H, W] (e.g. a reference set), by default zeros plus blurred inputs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..base import ExplainContext, GradientMethod
from ..baselines import default_blur_sigma, gaussian_blur


class _TargetColumn(nn.Module):
    """Presents one class's logit as the model's only output, counting evaluations."""

    def __init__(self, ctx: ExplainContext, target: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.ctx.forward(x, heavy=True)
        if torch.is_grad_enabled() and x.requires_grad:
            # the explainer takes one autograd.grad per batch it evaluates
            self.ctx.counter.backward_calls += 1
            self.ctx.counter.backward_samples += x.shape[0]
        return logits[:, self.target : self.target + 1]


class SHAP(GradientMethod):
    name = "shap"

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        import shap

        opts = ctx.options
        x = ctx.inputs.float()
        if opts.shap_background is not None:
            background = opts.shap_background.to(device=x.device, dtype=x.dtype)
            if background.ndim != 4 or background.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"shap_background must have shape [N, {', '.join(map(str, x.shape[1:]))}], "
                    f"got {tuple(background.shape)}"
                )
        else:
            sigma = opts.blur_sigma or default_blur_sigma(*x.shape[-2:])
            background = torch.cat([torch.zeros_like(x[:1]), gaussian_blur(x, sigma)])
        out = torch.zeros_like(x)
        state = np.random.get_state()  # the explainer reseeds numpy's global generator
        try:
            for t in torch.unique(ctx.targets).tolist():
                rows = (ctx.targets == t).nonzero().flatten()
                explainer = shap.GradientExplainer(
                    _TargetColumn(ctx, int(t)), background, batch_size=ctx.chunk(with_grad=True)
                )
                values = explainer.shap_values(x[rows], nsamples=opts.shap_samples, rseed=opts.seed)
                arr = np.asarray(values[0] if isinstance(values, list) else values)
                if arr.ndim == x.ndim + 1:
                    arr = arr[..., 0]
                out[rows] = torch.as_tensor(arr, dtype=torch.float32, device=x.device)
        finally:
            np.random.set_state(state)
        return out

