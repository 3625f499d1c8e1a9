"""Feature visualisation by activation maximisation (Erhan et al. 2009; Olah et al. 2017).

Gradient ascent on an input image to excite one channel of a layer, with L2 and total-variation
penalties and random jitter as regularisers; deterministic for a given seed.
"""

from __future__ import annotations

import torch
from torch import nn

from .hooks import capture_layer
from .layers import resolve_layer
from .planner import eval_mode, model_device


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def activation_maximization(
    model: nn.Module,
    layer: nn.Module | str,
    channel: int,
    *,
    input_shape: tuple[int, int, int] | None = None,
    steps: int = 128,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    jitter: int = 2,
    seed: int = 0,
) -> torch.Tensor:
    """An image [C, H, W] that maximises the mean activation of ``channel`` at ``layer``.

    ``input_shape`` defaults to (in_channels of the first Conv2d, 64, 64). For token layers
    [B, T, D] the channel is the feature dimension; for [B, D] outputs it is the unit.
    """
    resolved = resolve_layer(model, layer)
    if steps < 1 or lr <= 0:
        raise ValueError("steps must be >= 1 and lr > 0")
    if input_shape is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError("cannot infer input_shape (no Conv2d); pass input_shape=(C, H, W)")
        input_shape = (first.in_channels, 64, 64)
    device = model_device(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    image = (0.01 * torch.randn((1, *input_shape), generator=gen)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([image], lr=lr)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen).tolist() if jitter > 0 else [[0, 0]] * steps
    with eval_mode(model), capture_layer(resolved.module) as rec:
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            dy, dx = shifts[step]
            shifted = torch.roll(image, shifts=(dy, dx), dims=(2, 3))
            model(shifted)
            act = rec.output
            if act is None:
                raise ValueError(f"layer {resolved.name!r} was not called in the forward pass")
            if act.ndim == 4:
                n_ch = act.shape[1]
                value = act[:, channel].mean() if channel < n_ch else None
            elif act.ndim == 3:
                n_ch = act.shape[2]
                value = act[:, :, channel].mean() if channel < n_ch else None
            else:
                n_ch = act.shape[1]
                value = act[:, channel].mean() if channel < n_ch else None
            if value is None:
                raise ValueError(f"channel {channel} is out of range: layer {resolved.name!r} has {n_ch}")
            loss = -value + l2 * image.pow(2).mean() + tv * _total_variation(image)
            # autograd.grad touches only the image, never the parameters' .grad
            (image.grad,) = torch.autograd.grad(loss, [image])
            opt.step()
    return image.detach()[0]
