"""Toy models with a known concept direction for the TCAV tests.

In ``KnownDirectionNet`` the target logit is ``a * (u . h) + 0.5 * |P h|^2`` on the activations h
of ``layer1``/``layer2`` (both identity maps), with P the projection orthogonal to u. Its gradient
``a * u + P h`` has a positive component along u for every input, and a part that varies with the
input, so random directions give scores spread around 0.5.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

DIM = 16
TARGET = 1


class QuadraticHead(nn.Module):
    def __init__(self, u: torch.Tensor, a: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("u", u)
        self.a = a

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        along = h @ self.u
        perp = h - along[:, None] * self.u
        logit = self.a * along + 0.5 * (perp**2).sum(-1)
        return torch.stack([-logit, logit, torch.zeros_like(logit)], dim=1)


class BackwardCounter(torch.autograd.Function):
    """Identity whose backward increments a counter (to count backward passes)."""

    @staticmethod
    def forward(ctx, x, box):  # type: ignore[override]
        ctx.box = box
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        ctx.box["backward"] += 1
        return grad, None


class KnownDirectionNet(nn.Module):
    def __init__(self, u: torch.Tensor) -> None:
        super().__init__()
        self.layer1 = nn.Linear(DIM, DIM)
        self.layer2 = nn.Linear(DIM, DIM)
        self.head = QuadraticHead(u)
        self.calls = {"forward": 0, "backward": 0}
        with torch.no_grad():
            for layer in (self.layer1, self.layer2):
                layer.weight.copy_(torch.eye(DIM))
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls["forward"] += 1
        # after the last tested layer, so every backward pass towards the layers goes through it
        h = BackwardCounter.apply(self.layer2(self.layer1(x)), self.calls)
        return self.head(h)


@pytest.fixture
def direction() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    u = torch.randn(DIM, generator=g)
    return u / u.norm()


@pytest.fixture
def toy(direction: torch.Tensor) -> KnownDirectionNet:
    return KnownDirectionNet(direction).eval()


class Sets:
    """Concept, random and class-input sets for the toy model (all N(0, I) unless shifted)."""

    def __init__(self, u: torch.Tensor, *, n_random: int = 10, size: int = 40, seed: int = 2) -> None:
        g = torch.Generator().manual_seed(seed)
        self.u = u
        self.randoms = [torch.randn(size, DIM, generator=g) for _ in range(n_random)]
        self.aligned = torch.randn(size, DIM, generator=g) + 3.0 * u
        self.opposed = torch.randn(size, DIM, generator=g) - 3.0 * u
        self.unrelated = torch.randn(size, DIM, generator=g)
        self.inputs = torch.randn(100, DIM, generator=g)


@pytest.fixture
def sets(direction: torch.Tensor) -> Sets:
    return Sets(direction)
