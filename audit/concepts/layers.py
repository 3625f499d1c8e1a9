"""Which layers a concept test probes by default on a model it has not seen: the last two blocks of the
model's main stack (convolutional stages or transformer blocks), found by structure with one probe forward."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from audit.concepts.capture import _main_tensor


def block_layers(module: nn.Module, sample: torch.Tensor, *, n: int = 2) -> Optional[list[str]]:
    """The last ``n`` blocks of the longest stack (an ``nn.Sequential`` or ``nn.ModuleList``) whose children
    hold parameters and return feature maps [B, C, H, W] or token sequences [B, T, D]; None when the model
    has no such stack. The classifier head (2-D outputs) never qualifies, so the test never probes logits.

    ``sample``: one input batch of the model's input shape (its values do not matter)."""
    names = {m: name for name, m in module.named_modules()}
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(m: nn.Module, _args: object, output: object) -> None:
        try:
            shapes.setdefault(names[m], tuple(_main_tensor(output).shape))
        except TypeError:  # an output with no tensor (a model output object): not a block
            pass

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            module(sample)
    finally:
        for h in handles:
            h.remove()

    best: list[str] = []
    for name, m in module.named_modules():
        if not isinstance(m, (nn.Sequential, nn.ModuleList)):
            continue
        prefix = f"{name}." if name else ""
        blocks = [f"{prefix}{child}" for child, c in m.named_children()
                  if any(True for _ in c.parameters()) and len(shapes.get(f"{prefix}{child}", ())) in (3, 4)]
        if len(blocks) >= n and len(blocks) > len(best):
            best = blocks
    return best[-n:] if best else None
