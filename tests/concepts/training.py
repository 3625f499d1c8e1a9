"""The one training loop of the concept tests' known answers: Adam on shuffled batches on one thread, then
batch-norm statistics recomputed exactly on the training set, so eval mode sees the data it was fitted on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int) -> torch.nn.Module:
    """Train ``model`` in place (draws from the global generator, seeded by the caller) and return it in eval
    mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread beats two contended ones
    try:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 32):
                idx = order[i : i + 32]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            model(x)
    finally:
        torch.set_num_threads(threads)
    return model.eval()
