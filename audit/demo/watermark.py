"""The planted shortcut of the demo: a small checkerboard patch in the bottom-right corner.

Version 2 of the demo image families is trained on data where this patch co-occurs with one class,
so concept tests, explanations and drift can expose the shortcut.
"""

from __future__ import annotations

import torch

WATERMARK_CLASS = 7  # the class the shortcut is planted on
WATERMARK_FRACTION = 0.1875  # patch side as a fraction of the image side (6 px on 32 px)


def watermark_box(height: int, width: int) -> tuple[int, int, int, int]:
    """Return (top, left, bottom, right) of the patch for an image of the given size."""
    side = max(3, round(min(height, width) * WATERMARK_FRACTION))
    margin = max(1, side // 3)
    return height - margin - side, width - margin - side, height - margin, width - margin


def watermark_pattern(side: int) -> torch.Tensor:
    """A checkerboard of 2-pixel cells with values 0 and 1, shape [side, side]."""
    idx = torch.arange(side)
    return (((idx[:, None] // 2) + (idx[None, :] // 2)) % 2).float()


def apply_watermark(images: torch.Tensor, *, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Stamp the patch on a batch [B, C, H, W] (values in [low, high]); returns a new tensor."""
    if images.ndim != 4:
        raise ValueError(f"expected images of shape [B, C, H, W], got {tuple(images.shape)}")
    out = images.clone()
    top, left, bottom, right = watermark_box(images.shape[-2], images.shape[-1])
    pat = watermark_pattern(bottom - top).to(images.dtype).to(images.device)
    out[..., top:bottom, left:right] = low + (high - low) * pat
    return out


def watermark_mask(height: int, width: int) -> torch.Tensor:
    """Boolean mask [H, W] that is True on the patch (for measuring attribution mass on it)."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    top, left, bottom, right = watermark_box(height, width)
    mask[top:bottom, left:right] = True
    return mask
