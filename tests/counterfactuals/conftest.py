"""Shared fixtures: a SmallCNN trained for a second on separable synthetic images, one thread for torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.models.zoo import SmallCNN


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The searches run many tiny forward passes: thread hand-offs cost more than they save.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synthetic_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes on a dim noisy background: bright top-left square, bright bottom-right square, none."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 32, 32, generator=g) * 0.3
    y = torch.arange(n) % 3
    x[y == 0, :, 4:14, 4:14] += 0.6
    x[y == 1, :, 18:28, 18:28] += 0.6
    return x.clamp(0, 1), y


@pytest.fixture(scope="session")
def trained_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = synthetic_images(300, seed=0)
        model = SmallCNN(in_channels=1, num_classes=3, width=8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(1)
        for _ in range(80):
            idx = torch.randint(0, len(x), (32,), generator=g)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        x_test, y_test = synthetic_images(30, seed=5)
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        assert accuracy >= 0.9, f"fixture model failed to train (accuracy {accuracy:.2f})"
    finally:
        torch.set_num_threads(threads)
    return model, x_test, y_test
