"""The batched elastic-net search behind image counterfactuals (Carlini & Wagner 2017; Chen et al. 2018,
EAD): FISTA steps on the change, a bisection over the trade-off constant, the best flip kept per row."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from audit.counterfactuals._common import is_flipped, margin_of
from audit.counterfactuals.search_box import Box, SearchOptions

logger = logging.getLogger(__name__)


def norms(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = delta.flatten(1)
    return flat.abs().sum(dim=1), flat.norm(dim=1)


@dataclass
class SearchState:
    best_delta: torch.Tensor
    best_dist: torch.Tensor
    best_c: torch.Tensor
    found: torch.Tensor
    closest_delta: torch.Tensor  # attempt with the lowest margin, reported when nothing flips
    closest_margin: torch.Tensor
    iterations: torch.Tensor  # per row: iterations it took part in


def search(
    model: nn.Module,
    x0: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
    c0: torch.Tensor,
    init: torch.Tensor,
    opts: SearchOptions,
    box: Box,
    groups: torch.Tensor | None = None,
) -> SearchState:
    """Minimise dist(delta) + c * max(margin + kappa, 0) per row, with a binary search over c per row.

    Rows are independent problems except for the optional diversity term, which pushes rows that
    share a `groups` id apart. L2: Adam on delta, clamp into each channel's range after each step.
    L1: FISTA with soft thresholding (the proximal step of the L1 norm), then the same clamp.
    """
    b = x0.shape[0]
    dev = x0.device
    lo_bound = torch.zeros(b, device=dev)
    hi_bound = torch.full((b,), math.inf, device=dev)
    c = c0.clone()
    state = SearchState(
        best_delta=torch.zeros_like(x0),
        best_dist=torch.full((b,), math.inf, device=dev),
        best_c=torch.full((b,), math.nan, device=dev),
        found=torch.zeros(b, dtype=torch.bool, device=dev),
        closest_delta=torch.zeros_like(x0),
        closest_margin=torch.full((b,), math.inf, device=dev),
        iterations=torch.zeros(b, dtype=torch.long, device=dev),
    )
    # Every step starts afresh from the same point (as in CW): a warm start from a flipped point
    # would make every step "succeed" and blind the bisection.
    start = (box.clamp(init) - x0).detach()

    for step in range(opts.binary_steps):
        success = torch.zeros(b, dtype=torch.bool, device=dev)
        _optimise(model, x0, orig, target, c, start, opts, box, state, success, groups)
        # Per-row bisection on the trade-off constant (CW): success -> try a smaller c.
        hi_bound = torch.where(success, torch.minimum(hi_bound, c), hi_bound)
        lo_bound = torch.where(success, lo_bound, torch.maximum(lo_bound, c))
        c = torch.where(torch.isinf(hi_bound), c * 10.0, (lo_bound + hi_bound) / 2.0)
        logger.debug("binary step %d: %d/%d rows flipped", step, int(state.found.sum()), b)
    return state


def _optimise(
    model: nn.Module,
    x0: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
    c: torch.Tensor,
    delta: torch.Tensor,
    opts: SearchOptions,
    box: Box,
    state: SearchState,
    success: torch.Tensor,
    groups: torch.Tensor | None,
) -> None:
    """One inner optimisation at fixed c from `delta`; every valid iterate is recorded in `state`.

    Rows are independent problems, so each row stops on its own convergence test and leaves the batch:
    a row's counterfactual does not depend on the rows searched beside it, and finished rows cost
    nothing. With the diversity term rows are coupled and stop together.
    """
    b = x0.shape[0]
    lo_box, hi_box = box.low - x0, box.high - x0  # delta must stay in [lo_box, hi_box], per channel
    l1_mode = opts.distance == "l1"
    coupled = groups is not None and opts.diversity_weight > 0

    delta = delta.clone()  # FISTA's last iterate (L1)
    point = delta.clone()  # the optimised variable: FISTA's extrapolation point (L1), Adam's iterate (L2)
    t_k = 1.0
    adam_m = torch.zeros_like(delta)  # Adam's moments, per element, so rows can leave the batch
    adam_v = torch.zeros_like(delta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    prev_loss = torch.full((b,), math.inf, device=x0.device)
    prev_best = state.best_dist.clone()
    check_every = 20
    rows = torch.arange(b, device=x0.device)  # rows still optimising

    for it in range(opts.max_iter):
        state.iterations[rows] += 1
        lr = opts.lr * (1.0 - it / opts.max_iter) ** 0.5  # decay so the last steps settle
        p = point[rows].detach().requires_grad_(True)
        c_r = c[rows]
        logits = model(x0[rows] + p)
        margin = margin_of(logits, orig[rows], target[rows])
        hinge = torch.clamp(margin + opts.kappa, min=0.0)
        flat = p.flatten(1)
        if l1_mode:
            smooth = c_r * hinge + opts.l2_weight * flat.pow(2).sum(dim=1)
            dist_now = flat.abs().sum(dim=1)
        else:
            smooth = c_r * hinge + flat.pow(2).sum(dim=1)
            dist_now = flat.norm(dim=1)
        if coupled:
            smooth = smooth - opts.diversity_weight * _mean_distance_to_peers(flat, groups[rows])
        total = smooth + (dist_now if l1_mode else 0.0)

        with torch.no_grad():
            _record(state, success, rows, p.detach(), logits.detach(), margin.detach(), dist_now.detach(), c_r,
                    orig[rows], target[rows])

        (grad,) = torch.autograd.grad(smooth.sum(), p)
        with torch.no_grad():
            lo_r, hi_r = lo_box[rows], hi_box[rows]
            if l1_mode:
                step = p.detach() - lr * grad
                new = torch.sign(step) * torch.clamp(step.abs() - lr, min=0.0)  # soft threshold
                new = torch.maximum(torch.minimum(new, hi_r), lo_r)
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t_k * t_k)) / 2.0
                nxt = new + ((t_k - 1.0) / t_next) * (new - delta[rows])
                point[rows] = torch.maximum(torch.minimum(nxt, hi_r), lo_r)
                delta[rows] = new
                t_k = t_next
            else:
                m = adam_m[rows].mul_(beta1).add_(grad, alpha=1.0 - beta1)
                v = adam_v[rows].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                adam_m[rows], adam_v[rows] = m, v
                n = it + 1  # every active row has taken the same number of steps
                denom = (v.sqrt() / math.sqrt(1.0 - beta2 ** n)).add_(eps)
                moved = p.detach().addcdiv(m, denom, value=-lr / (1.0 - beta1 ** n))
                point[rows] = torch.maximum(torch.minimum(moved, hi_r), lo_r)

        if (it + 1) % check_every == 0:
            # A row is done when it has flipped in this step and its best distance no longer improves,
            # or when it has not flipped and its loss has stalled (c too small).
            loss = total.detach()
            stalled = loss > prev_loss[rows] * (1.0 - 1e-3) - 1e-9
            settled = state.best_dist[rows] > prev_best[rows] * (1.0 - 5e-3) - 1e-12
            done = torch.where(success[rows], settled, stalled)
            prev_loss[rows] = torch.minimum(prev_loss[rows], loss)
            prev_best[rows] = state.best_dist[rows]
            if it + 1 >= 2 * check_every:
                if coupled:
                    if bool(done.all()):
                        break
                else:
                    rows = rows[~done]
                    if len(rows) == 0:
                        break


def _record(
    state: SearchState,
    success: torch.Tensor,
    rows: torch.Tensor,
    delta: torch.Tensor,
    logits: torch.Tensor,
    margin: torch.Tensor,
    dist: torch.Tensor,
    c: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
) -> None:
    """Record the iterates of the batch rows ``rows`` (every other argument is indexed like ``rows``)."""
    view = (len(delta),) + (1,) * (delta.ndim - 1)
    flipped = is_flipped(logits, orig, target)
    success[rows] |= flipped
    better = flipped & (dist < state.best_dist[rows])
    state.best_delta[rows] = torch.where(better.view(view), delta, state.best_delta[rows])
    state.best_dist[rows] = torch.where(better, dist, state.best_dist[rows])
    state.best_c[rows] = torch.where(better, c, state.best_c[rows])
    state.found[rows] |= flipped
    closer = margin < state.closest_margin[rows]
    state.closest_delta[rows] = torch.where(closer.view(view), delta, state.closest_delta[rows])
    state.closest_margin[rows] = torch.where(closer, margin, state.closest_margin[rows])


def _mean_distance_to_peers(flat: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance from each row to the other rows of its group (peers held fixed)."""
    dists = torch.cdist(flat, flat.detach())
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=flat.device)
    n_peers = same.sum(dim=1).clamp(min=1)
    return (dists * same).sum(dim=1) / n_peers
