"""Decision margins shared by the image and text counterfactual searches.

A margin below zero means the decision is flipped (away from the original class, or to the target).
"""

from __future__ import annotations

import torch
from torch import nn


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a parameter-free module)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def margin_of(logits: torch.Tensor, orig: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row margin [B]; target < 0 marks an untargeted row.

    Untargeted: logit of the original class minus the best other logit.
    Targeted: best logit other than the target minus the target logit.
    """
    rows = torch.arange(len(logits), device=logits.device)
    targeted = target >= 0
    keep = torch.where(targeted, target, orig)
    z_keep = logits[rows, keep]
    others = logits.clone()
    others[rows, keep] = -torch.inf
    z_other = others.max(dim=1).values
    return torch.where(targeted, z_other - z_keep, z_keep - z_other)


def is_flipped(logits: torch.Tensor, orig: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """True where the predicted class is the target (targeted rows) or not the original class."""
    pred = logits.argmax(dim=1)
    return torch.where(target >= 0, pred == target, pred != orig)
