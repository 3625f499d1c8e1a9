"""Batched, gradient-free model evaluation shared by the quality metrics.

Keeps the model in eval mode for the call and returns target probabilities or logits in chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from audit.attribution.memory import batch_for
from audit.attribution.planner import eval_mode, model_device


def target_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: str = "prob",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Target probability (``prob``) or logit (``logit``) of each row of ``inputs``, ``batch_size`` rows
    at a time (None: ``batch_for`` the input size and device)."""
    out = torch.empty(inputs.shape[0], device=inputs.device)
    if batch_size is None:
        batch_size = batch_for(inputs[0].numel() if len(inputs) else 1, device=inputs.device)
    with eval_mode(model), torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            stop = min(inputs.shape[0], start + batch_size)
            logits = model(inputs[start:stop]).float()
            if kind == "prob":
                logits = logits.softmax(1)
            out[start:stop] = logits.gather(1, targets[start:stop].view(-1, 1)).squeeze(1)
    return out


def prepare(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Move inputs to the model's device; None targets become the predicted classes."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        raise ValueError("inputs must be a tensor [B, C, H, W]")
    device = model_device(model)
    x = inputs.detach().float().to(device)
    if targets is None:
        with eval_mode(model), torch.no_grad():
            t = model(x).argmax(1)
    elif isinstance(targets, int):
        t = torch.full((x.shape[0],), targets, dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(targets).to(device=device, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        if t.shape[0] != x.shape[0]:
            raise ValueError(f"targets has {t.shape[0]} entries for a batch of {x.shape[0]}")
    return x, t


def pixel_relevance(attributions: torch.Tensor, batch: int, size: tuple[int, int], reduce: str) -> torch.Tensor:
    """Per-pixel relevance [B, H*W] from [B, C, H, W] (channels reduced) or [B, H, W] maps."""
    a = attributions.detach().float()
    if a.ndim == 4:
        a = a.abs().sum(1) if reduce == "abs_sum" else a.sum(1)
    if a.ndim != 3 or a.shape[0] != batch or tuple(a.shape[-2:]) != size:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs [B={batch}, H, W={size}]"
        )
    if reduce not in ("sum", "abs_sum"):
        raise ValueError(f"reduce must be 'sum' or 'abs_sum', got {reduce!r}")
    return a.flatten(1)
