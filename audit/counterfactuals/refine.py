"""Refining a found counterfactual: shrink the change while the shown (projected, 8-bit) point still flips,
drop its smallest entries for L1, and grow it where rounding onto the grid undid the flip."""

from __future__ import annotations

import torch
from torch import nn

from audit.attribution.memory import batch_for
from audit.counterfactuals._common import is_flipped
from audit.counterfactuals.search_box import Box, SearchOptions


@torch.no_grad()
def refine(
    model: nn.Module,
    x0: torch.Tensor,
    delta: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
    opts: SearchOptions,
    box: Box,
) -> torch.Tensor:
    """Shrink valid changes while they stay valid: scale towards x, and for L1 drop the smallest entries.

    Every candidate is checked with the model on the point as shown (projected into the box and onto
    its grid), so the result is valid whenever some candidate was.
    """
    if opts.distance == "l1":
        delta = _sparsify(model, x0, delta, orig, target, box)
    return _shrink(model, x0, delta, orig, target, box)


def _batched_flipped(
    model: nn.Module, x0: torch.Tensor, cands: torch.Tensor, orig: torch.Tensor, target: torch.Tensor, box: Box
) -> torch.Tensor:
    """cands [B, K, ...] -> flipped [B, K] for the shown points project(x0 + cand), in `batch_for` chunks."""
    b, k = cands.shape[:2]
    points = box.project(x0.unsqueeze(1) + cands).flatten(0, 1)
    step = batch_for(points[0].numel(), device=points.device)
    logits = torch.cat([model(points[i:i + step]) for i in range(0, len(points), step)])
    return is_flipped(logits, orig.repeat_interleave(k), target.repeat_interleave(k)).view(b, k)


# Scales tried beyond the found change when rounding onto the grid undid the flip.
_GROW = (1.1, 1.25, 1.5, 2.0, 3.0, 4.0)


def _shrink(model, x0, delta, orig, target, box, grid: int = 16, bisect: int = 8) -> torch.Tensor:
    """The smallest scale alpha of delta whose shown point still flips (bisection on a grid of (0, 1]).

    Rows where no alpha <= 1 flips (the grid rounding undid the flip) are grown instead."""
    view = (len(delta),) + (1,) * (delta.ndim - 1)
    alphas = torch.linspace(0.0, 1.0, grid + 1, device=delta.device)[1:]
    cands = alphas.view(1, -1, *([1] * (delta.ndim - 1))) * delta.unsqueeze(1)
    ok = _batched_flipped(model, x0, cands, orig, target, box)
    if box.levels is None:
        ok[:, -1] = True  # alpha = 1 is the validated input point (no grid to undo it)
    any_ok = ok.any(dim=1)
    first = ok.float().argmax(dim=1)
    hi = alphas[first]
    lo = torch.where(first > 0, alphas[(first - 1).clamp(min=0)], torch.zeros_like(hi))
    for _ in range(bisect):
        mid = (lo + hi) / 2.0
        flipped = _batched_flipped(model, x0, (mid.view(view) * delta).unsqueeze(1), orig, target, box)[:, 0]
        hi = torch.where(flipped, mid, hi)
        lo = torch.where(flipped, lo, mid)
    out = torch.where(any_ok.view(view), hi.view(view) * delta, delta)
    if not bool(any_ok.all()):
        out[~any_ok] = grow(model, x0[~any_ok], delta[~any_ok], orig[~any_ok], target[~any_ok], box)
    return out


def grow(model, x0, delta, orig, target, box) -> torch.Tensor:
    """The first scale in _GROW whose shown point flips; rows where none does keep delta."""
    view = (len(delta),) + (1,) * (delta.ndim - 1)
    alphas = torch.tensor((1.0, *_GROW), device=delta.device, dtype=delta.dtype)
    cands = alphas.view(1, -1, *([1] * (delta.ndim - 1))) * delta.unsqueeze(1)
    ok = _batched_flipped(model, x0, cands, orig, target, box)
    scale = torch.where(ok.any(dim=1), alphas[ok.float().argmax(dim=1)], torch.ones(len(delta), device=delta.device))
    return scale.view(view).to(delta.dtype) * delta


def _sparsify(model, x0, delta, orig, target, box, grid: int = 16, bisect: int = 6) -> torch.Tensor:
    """Zero the smallest |delta| entries: the largest dropped fraction that keeps the flip."""
    flat = delta.flatten(1)
    order = flat.abs().argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    nonzero = (flat != 0).sum(dim=1)
    n_zero = flat.shape[1] - nonzero

    def drop(fraction: torch.Tensor) -> torch.Tensor:
        # keep entries whose rank is at or above n_zero + fraction * nonzero
        cut = n_zero + (fraction * nonzero).floor().long()
        return torch.where(ranks >= cut[:, None], flat, torch.zeros_like(flat)).view_as(delta)

    fracs = torch.linspace(0.0, 1.0, grid + 1, device=delta.device)[:-1]
    cands = torch.stack([drop(torch.full_like(nonzero, f, dtype=torch.float)) for f in fracs.tolist()], dim=1)
    ok = _batched_flipped(model, x0, cands, orig, target, box)
    ok[:, 0] = True  # dropping nothing is the fallback (checked again by _shrink)
    best = (ok.float() * torch.arange(1, grid + 1, device=delta.device)).argmax(dim=1)
    lo = fracs[best]
    hi = torch.where(best + 1 < grid, fracs[(best + 1).clamp(max=grid - 1)], torch.ones_like(lo))
    for _ in range(bisect):
        mid = (lo + hi) / 2.0
        flipped = _batched_flipped(model, x0, drop(mid).unsqueeze(1), orig, target, box)[:, 0]
        lo = torch.where(flipped, mid, lo)
        hi = torch.where(flipped, hi, mid)
    return drop(lo)
