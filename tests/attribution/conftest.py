"""Shared fixtures for the attribution tests: tiny seeded models and inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from audit.models.zoo import SmallCNN


def rank_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation by scipy (an oracle independent of the engine's own ranking)."""
    return float(spearmanr(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0])


@pytest.fixture
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=10, width=8).eval()


@pytest.fixture
def gray_batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 1, 32, 32)


class TinyNonlinear(nn.Module):
    """Smooth nonlinear model (no ReLU kinks) for completeness checks."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread per module: on 2 shared, busy cores two OpenMP threads stall on each
    other's barriers (the suite ran ~10x slower); results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
