"""An inference-optimised copy of the model for the many-evaluation methods.

BatchNorm is folded into the preceding convolutions (torch.fx) and weights are stored
channels-last; the copy computes the same function, checked on the batch before it is used.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# Expanded evaluations from which the copy (a deepcopy plus an FX trace) pays for itself.
AUTO_MIN_EVALUATIONS = 64


def build_inference_copy(model: nn.Module) -> nn.Module:
    """Deep copy with conv+BN folded and channels-last weights; parameters need no gradient."""
    from torch.fx.experimental.optimization import fuse

    copy_ = fuse(model, inplace=False)
    copy_ = copy_.to(memory_format=torch.channels_last)
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_.eval()


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def same_function(copy_: nn.Module, inputs: torch.Tensor, reference: torch.Tensor) -> tuple[bool, float]:
    """Whether the copy reproduces the reference logits on ``inputs`` (float rounding allowed)."""
    with torch.no_grad():
        out = copy_(inputs.contiguous(memory_format=torch.channels_last)).float()
    err = float((out - reference).abs().max())
    tol = 1e-4 * max(1.0, float(reference.abs().max()))
    return err <= tol, err
