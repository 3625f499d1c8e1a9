"""Rank statistics shared by the engine's fidelity guard and the quality metrics.

Spearman correlation uses average ranks for ties, computed row-wise on the tensor's device.
"""

from __future__ import annotations

import torch


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks (0-based) of a 2-D tensor, tied values sharing their average rank."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D tensor [rows, values], got shape {tuple(x.shape)}")
    n, d = x.shape
    values, order = x.double().sort(dim=1)
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[:, 1:] = values[:, 1:] != values[:, :-1]
    group = new_group.long().cumsum(1) - 1 + (torch.arange(n, device=x.device) * d).unsqueeze(1)
    pos = torch.arange(d, device=x.device, dtype=torch.float64).expand(n, d)
    sums = torch.zeros(n * d, dtype=torch.float64, device=x.device).index_add_(0, group.flatten(), pos.flatten())
    counts = torch.zeros(n * d, dtype=torch.float64, device=x.device).index_add_(
        0, group.flatten(), torch.ones(n * d, dtype=torch.float64, device=x.device)
    )
    avg = (sums / counts.clamp_min(1))[group]
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation of two [rows, values] tensors (0 where a row is constant)."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation of two tensors [rows, ...] (flattened per row)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a2 = a.reshape(a.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    return pearson(average_ranks(a2), average_ranks(b2))
