"""Toy models with known relevance for the quality metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class PixelLinear(nn.Module):
    """Two-class linear model on pixels: logit_0 = w . x, logit_1 = 0."""

    def __init__(self, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(1, size, size, generator=gen).abs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).flatten(1).sum(1) * 0.2
        return torch.stack([z, torch.zeros_like(z)], dim=1)


@pytest.fixture
def pixel_linear() -> PixelLinear:
    return PixelLinear().eval()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread per module (see tests/attribution/conftest.py for why)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
