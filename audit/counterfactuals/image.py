"""Image counterfactuals: the smallest change to an input that flips the model's decision.

Elastic-net style search (Carlini & Wagner 2017; Chen et al. 2018, EAD), batched over restarts and samples.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, Union

import torch
from torch import nn

from audit.counterfactuals._common import device_of, is_flipped, margin_of

logger = logging.getLogger(__name__)

Distance = Literal["l1", "l2"]
Progress = Callable[[float, str], None]


# --- results --------------------------------------------------------------------------------------


@dataclass
class ImageCounterfactual:
    """One counterfactual for one input [1, C, H, W].

    `valid` is True when the model's decision on `x_cf` is `target` (targeted) or differs from
    `original_class` (untargeted). `x_cf` is the point as it would be shown or stored: every channel
    clamped into its own range and, with `levels`, snapped to that grid, and `valid` is judged on that
    very point. When no valid point was found, `x_cf` is the attempt closest to the decision boundary
    and `valid` is False. `changed_fraction` counts elements that moved by more than `change_tol` x
    (high - low) of their channel. Distances are over all C x H x W elements.
    """

    x: torch.Tensor
    x_cf: torch.Tensor
    original_class: int
    cf_class: int
    target: int | None
    valid: bool
    l1: float
    l2: float
    linf: float
    changed_fraction: float
    distance: Distance
    original_prob: float
    cf_prob: float
    margin: float
    trade_off: float
    iterations: int
    seed: int
    change_tol: float

    @property
    def delta(self) -> torch.Tensor:
        return self.x_cf - self.x

    def to_dict(self, *, include_tensors: bool = False) -> dict[str, Any]:
        """JSON-safe summary; `include_tensors` adds x_cf and delta as nested lists."""
        out: dict[str, Any] = {
            "original_class": self.original_class,
            "cf_class": self.cf_class,
            "target": self.target,
            "valid": self.valid,
            "l1": _finite(self.l1),
            "l2": _finite(self.l2),
            "linf": _finite(self.linf),
            "changed_fraction": _finite(self.changed_fraction),
            "distance": self.distance,
            "original_prob": _finite(self.original_prob),
            "cf_prob": _finite(self.cf_prob),
            "margin": _finite(self.margin),
            "trade_off": _finite(self.trade_off),
            "iterations": self.iterations,
            "seed": self.seed,
            "change_tol": self.change_tol,
            "shape": list(self.x_cf.shape),
        }
        if include_tensors:
            out["x_cf"] = self.x_cf.detach().cpu().tolist()
            out["delta"] = self.delta.detach().cpu().tolist()
        return out


@dataclass
class CounterfactualSet:
    """Several counterfactuals (of one input, or one per input) with the usual quality measures.

    validity: fraction valid. proximity_l1 / proximity_l2: mean distance of the valid ones.
    sparsity: mean changed fraction of the valid ones. diversity_l1 / diversity_l2: mean pairwise
    distance between the valid counterfactuals (meaningful for several counterfactuals of one input).
    """

    items: list[ImageCounterfactual]
    validity: float
    proximity_l1: float
    proximity_l2: float
    sparsity: float
    diversity_l1: float
    diversity_l2: float
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ImageCounterfactual:
        return self.items[i]

    def __iter__(self):
        return iter(self.items)

    def to_dict(self, *, include_tensors: bool = False) -> dict[str, Any]:
        return {
            "validity": _finite(self.validity),
            "proximity_l1": _finite(self.proximity_l1),
            "proximity_l2": _finite(self.proximity_l2),
            "sparsity": _finite(self.sparsity),
            "diversity_l1": _finite(self.diversity_l1),
            "diversity_l2": _finite(self.diversity_l2),
            "warnings": list(self.warnings),
            "items": [c.to_dict(include_tensors=include_tensors) for c in self.items],
        }


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return float(value)


# --- options --------------------------------------------------------------------------------------


Bound = Union[float, Sequence[float]]


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of the search; the defaults suit inputs scaled to a unit-width range such as [0, 1].

    `input_range` is (low, high), each a number or one number per channel: under per-channel
    normalisation channel c is valid on [(0 - mean_c) / std_c, (1 - mean_c) / std_c]. `levels`, when
    set, is the number of representable values per channel (256 for 8-bit images): the returned
    point is snapped to that grid, so it is the image that would be shown or stored.
    """

    distance: Distance = "l2"
    input_range: tuple[Bound, Bound] = (0.0, 1.0)
    max_iter: int = 200
    binary_steps: int = 5
    lr: float = 0.01
    c_init: float = 1.0
    kappa: float = 0.0
    l2_weight: float = 0.0  # elastic-net L2 term added to the L1 objective (EAD's ridge part)
    restarts: int = 4
    init_noise: float = 0.05  # uniform start noise of restarts after the first, x (high - low)
    change_tol: float = 1e-3
    refine: bool = True
    diversity_weight: float = 0.0
    levels: int | None = None

    def validate(self) -> None:
        if self.distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {self.distance!r}")
        low, high = _per_channel(self.input_range)
        if len(low) != len(high) or not all(
            math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in zip(low, high)
        ):
            raise ValueError(
                f"input_range must be (low, high) with low < high (numbers, or one per channel), got {self.input_range!r}"
            )
        if self.levels is not None and (isinstance(self.levels, bool) or int(self.levels) != self.levels
                                        or self.levels < 2):
            raise ValueError(f"levels must be None or an integer >= 2, got {self.levels!r}")
        for name in ("max_iter", "binary_steps", "restarts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "c_init"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("kappa", "l2_weight", "init_noise", "change_tol", "diversity_weight"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def _per_channel(input_range: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low, high = input_range
    low = tuple(float(v) for v in (low if isinstance(low, (list, tuple)) else [low]))
    high = tuple(float(v) for v in (high if isinstance(high, (list, tuple)) else [high]))
    if len(low) == 1 and len(high) > 1:
        low = low * len(high)
    if len(high) == 1 and len(low) > 1:
        high = high * len(low)
    return low, high


@dataclass(frozen=True)
class _Box:
    """The valid inputs: per-channel bounds [1, C, 1, 1] and an optional grid of `levels` values."""

    low: torch.Tensor
    high: torch.Tensor
    levels: int | None

    @classmethod
    def of(cls, opts: SearchOptions, channels: int, device: torch.device, dtype: torch.dtype) -> "_Box":
        low, high = _per_channel(opts.input_range)
        if len(low) not in (1, channels):
            raise ValueError(f"input_range gives {len(low)} channel bounds but the input has {channels} channels")
        shape = (1, len(low), 1, 1)
        return cls(torch.tensor(low, device=device, dtype=dtype).view(shape),
                   torch.tensor(high, device=device, dtype=dtype).view(shape), opts.levels)

    @property
    def width(self) -> torch.Tensor:
        return self.high - self.low

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(x, self.high), self.low)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The point as it is shown or stored: clamped per channel, then snapped to the grid."""
        x = self.clamp(x)
        if self.levels is None:
            return x
        step = self.width / (self.levels - 1)
        return self.clamp(self.low + torch.round((x - self.low) / step) * step)


# --- the batched search ---------------------------------------------------------------------------


def _norms(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = delta.flatten(1)
    return flat.abs().sum(dim=1), flat.norm(dim=1)


@dataclass
class _SearchState:
    best_delta: torch.Tensor
    best_dist: torch.Tensor
    best_c: torch.Tensor
    found: torch.Tensor
    closest_delta: torch.Tensor  # attempt with the lowest margin, reported when nothing flips
    closest_margin: torch.Tensor
    iterations: int = 0


def _search(
    model: nn.Module,
    x0: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
    c0: torch.Tensor,
    init: torch.Tensor,
    opts: SearchOptions,
    box: _Box,
    groups: torch.Tensor | None = None,
) -> _SearchState:
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
    state = _SearchState(
        best_delta=torch.zeros_like(x0),
        best_dist=torch.full((b,), math.inf, device=dev),
        best_c=torch.full((b,), math.nan, device=dev),
        found=torch.zeros(b, dtype=torch.bool, device=dev),
        closest_delta=torch.zeros_like(x0),
        closest_margin=torch.full((b,), math.inf, device=dev),
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
    box: _Box,
    state: _SearchState,
    success: torch.Tensor,
    groups: torch.Tensor | None,
) -> None:
    """One inner optimisation at fixed c from `delta`; every valid iterate is recorded in `state`."""
    b = x0.shape[0]
    lo_box, hi_box = box.low - x0, box.high - x0  # delta must stay in [lo_box, hi_box], per channel
    l1_mode = opts.distance == "l1"

    delta = delta.clone()  # FISTA's last iterate (L1); Adam updates `point` in place (L2)
    if l1_mode:
        point = delta.clone()  # FISTA extrapolation point
        t_k = 1.0
    else:
        point = delta.clone().requires_grad_(True)
        adam = torch.optim.Adam([point], lr=opts.lr)
    prev_loss = torch.full((b,), math.inf, device=x0.device)
    prev_best = state.best_dist.clone()
    check_every = 20

    for it in range(opts.max_iter):
        state.iterations += 1
        lr = opts.lr * (1.0 - it / opts.max_iter) ** 0.5  # decay so the last steps settle
        p = point if not l1_mode else point.detach().requires_grad_(True)
        logits = model(x0 + p)
        margin = margin_of(logits, orig, target)
        hinge = torch.clamp(margin + opts.kappa, min=0.0)
        flat = p.flatten(1)
        if l1_mode:
            smooth = c * hinge + opts.l2_weight * flat.pow(2).sum(dim=1)
            dist_now = flat.abs().sum(dim=1)
        else:
            smooth = c * hinge + flat.pow(2).sum(dim=1)
            dist_now = flat.norm(dim=1)
        if groups is not None and opts.diversity_weight > 0:
            smooth = smooth - opts.diversity_weight * _mean_distance_to_peers(flat, groups)
        total = smooth + (dist_now if l1_mode else 0.0)

        with torch.no_grad():
            _record(state, success, p.detach(), logits.detach(), margin.detach(), dist_now.detach(), c, orig, target)

        (grad,) = torch.autograd.grad(smooth.sum(), p)
        with torch.no_grad():
            if l1_mode:
                step = point - lr * grad
                new = torch.sign(step) * torch.clamp(step.abs() - lr, min=0.0)  # soft threshold
                new = torch.maximum(torch.minimum(new, hi_box), lo_box)
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t_k * t_k)) / 2.0
                point = new + ((t_k - 1.0) / t_next) * (new - delta)
                point = torch.maximum(torch.minimum(point, hi_box), lo_box)
                delta, t_k = new, t_next
            else:
                for group in adam.param_groups:
                    group["lr"] = lr
                point.grad = grad
                adam.step()
                point.copy_(torch.maximum(torch.minimum(point, hi_box), lo_box))

        if (it + 1) % check_every == 0:
            # Early stop: a row is done when it has flipped in this step and its best distance no
            # longer improves, or when it has not flipped and its loss has stalled (c too small).
            loss = total.detach()
            stalled = loss > prev_loss * (1.0 - 1e-3) - 1e-9
            settled = state.best_dist > prev_best * (1.0 - 5e-3) - 1e-12
            done = torch.where(success, settled, stalled)
            if bool(done.all()) and it + 1 >= 2 * check_every:
                break
            prev_loss = torch.minimum(prev_loss, loss)
            prev_best = state.best_dist.clone()


def _record(
    state: _SearchState,
    success: torch.Tensor,
    delta: torch.Tensor,
    logits: torch.Tensor,
    margin: torch.Tensor,
    dist: torch.Tensor,
    c: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
) -> None:
    view = (len(delta),) + (1,) * (delta.ndim - 1)
    flipped = is_flipped(logits, orig, target)
    success |= flipped
    better = flipped & (dist < state.best_dist)
    state.best_delta = torch.where(better.view(view), delta, state.best_delta)
    state.best_dist = torch.where(better, dist, state.best_dist)
    state.best_c = torch.where(better, c, state.best_c)
    state.found |= flipped
    closer = margin < state.closest_margin
    state.closest_delta = torch.where(closer.view(view), delta, state.closest_delta)
    state.closest_margin = torch.where(closer, margin, state.closest_margin)


def _mean_distance_to_peers(flat: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance from each row to the other rows of its group (peers held fixed)."""
    dists = torch.cdist(flat, flat.detach())
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=flat.device)
    n_peers = same.sum(dim=1).clamp(min=1)
    return (dists * same).sum(dim=1) / n_peers


# --- refinement -----------------------------------------------------------------------------------


@torch.no_grad()
def _refine(
    model: nn.Module,
    x0: torch.Tensor,
    delta: torch.Tensor,
    orig: torch.Tensor,
    target: torch.Tensor,
    opts: SearchOptions,
    box: _Box,
) -> torch.Tensor:
    """Shrink valid changes while they stay valid: scale towards x, and for L1 drop the smallest entries.

    Every candidate is checked with the model on the point as shown (projected into the box and onto
    its grid), so the result is valid whenever some candidate was.
    """
    if opts.distance == "l1":
        delta = _sparsify(model, x0, delta, orig, target, box)
    return _shrink(model, x0, delta, orig, target, box)


def _batched_flipped(
    model: nn.Module, x0: torch.Tensor, cands: torch.Tensor, orig: torch.Tensor, target: torch.Tensor, box: _Box
) -> torch.Tensor:
    """cands [B, K, ...] -> flipped [B, K] for the shown points project(x0 + cand), one forward pass."""
    b, k = cands.shape[:2]
    logits = model(box.project(x0.unsqueeze(1) + cands).flatten(0, 1))
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
        out[~any_ok] = _grow(model, x0[~any_ok], delta[~any_ok], orig[~any_ok], target[~any_ok], box)
    return out


def _grow(model, x0, delta, orig, target, box) -> torch.Tensor:
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


# --- public API -----------------------------------------------------------------------------------


def _check_input(x: torch.Tensor, opts: SearchOptions, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    box = _Box.of(opts, x.shape[1], torch.device("cpu"), torch.float64)
    xd = x.detach().to("cpu", torch.float64)
    tol = 1e-6 * box.width
    outside = (xd < box.low - tol) | (xd > box.high + tol)
    if bool(outside.any()):
        c = int(outside.nonzero()[0, 1])
        lo = float(box.low.expand(1, x.shape[1], 1, 1)[0, c])
        hi = float(box.high.expand(1, x.shape[1], 1, 1)[0, c])
        values = xd[:, c]
        raise ValueError(
            f"{name} has values in [{float(values.min()):.4g}, {float(values.max()):.4g}] in channel {c}, outside "
            f"input_range [{lo:.4g}, {hi:.4g}] of that channel: pass input_range=(low, high) matching the model's "
            "input scale (one bound per channel under per-channel normalisation)"
        )


def _run(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int | None],
    opts: SearchOptions,
    seed: int,
    *,
    rows_per_sample: int,
    row_targets: list[list[int | None]] | None = None,
    diverse: bool = False,
) -> list[list[ImageCounterfactual]]:
    """Search counterfactuals for every sample of x; returns, per sample, one result per row kept.

    Plain search: `rows_per_sample` restarts per sample, the best valid row is kept (one result).
    Diverse search: every row is its own counterfactual (row_targets gives each row's target).
    """
    dev = device_of(model)
    out_device = x.device
    n = x.shape[0]
    x_dev = x.detach().to(dev, _dtype_of(model))
    box = _Box.of(opts, x.shape[1], dev, x_dev.dtype)
    with torch.no_grad():
        logits0 = model(x_dev)
    n_classes = logits0.shape[1]
    if n_classes < 2:
        raise ValueError(f"the model must output at least 2 class logits, got {n_classes}")
    orig = logits0.argmax(dim=1)
    probs0 = logits0.softmax(dim=1)
    for t in targets if row_targets is None else [t for ts in row_targets for t in ts]:
        if t is not None and not 0 <= int(t) < n_classes:
            raise ValueError(f"target {t} is not a class index of this model (0..{n_classes - 1})")

    r = rows_per_sample
    x_rows = x_dev.repeat_interleave(r, dim=0)
    orig_rows = orig.repeat_interleave(r)
    if row_targets is None:
        tgt = [(-1 if t is None else int(t)) for t in targets for _ in range(r)]
    else:
        tgt = [(-1 if t is None else int(t)) for ts in row_targets for t in ts]
    tgt_rows = torch.tensor(tgt, device=dev, dtype=torch.long)

    # Restart k starts from x itself (k = 0) or from x plus seeded uniform noise, with its own c.
    gen = torch.Generator().manual_seed(int(seed))
    noise = (torch.rand(x_rows.shape, generator=gen) * 2.0 - 1.0) * opts.init_noise
    restart = torch.arange(x_rows.shape[0]) % r
    noise[restart == 0] = 0.0
    init = x_rows + noise.to(dev, x_dev.dtype) * box.width
    c_scale = torch.tensor([10.0 ** ((k % 3) - 1 if k else 0) for k in restart.tolist()], device=dev)
    c0 = opts.c_init * c_scale
    groups = torch.arange(n, device=dev).repeat_interleave(r) if diverse else None

    state = _search(model, x_rows, orig_rows, tgt_rows, c0, init, opts, box, groups)
    delta = torch.where(state.found.view(-1, 1, 1, 1), state.best_delta, state.closest_delta)
    found = state.found
    if bool(found.any()) and (opts.refine or box.levels is not None):
        with torch.no_grad():
            args = (x_rows[found], delta[found], orig_rows[found], tgt_rows[found])
            settled = _refine(model, *args, opts, box) if opts.refine else _grow(model, *args, box)
        delta = delta.clone()
        delta[found] = settled

    # Validity is judged on the point as it is returned (shown, stored): projected, on the grid.
    with torch.no_grad():
        x_cf = box.project(x_rows + delta)
        logits = model(x_cf)
    flipped = is_flipped(logits, orig_rows, tgt_rows)
    margin = margin_of(logits, orig_rows, tgt_rows)
    l1, l2 = _norms(x_cf - x_rows)
    probs = logits.softmax(dim=1)
    score = torch.where(flipped, l1 if opts.distance == "l1" else l2, torch.inf)

    results: list[list[ImageCounterfactual]] = []
    for i in range(n):
        rows = list(range(i * r, (i + 1) * r))
        if not diverse:
            sample_scores = score[rows]
            if torch.isfinite(sample_scores).any():
                rows = [rows[int(sample_scores.argmin())]]
            else:
                rows = [rows[int(margin[rows].argmin())]]
        items = []
        for j in rows:
            changed = ((x_cf[j] - x_rows[j]).abs() > opts.change_tol * box.width[0]).float().mean()
            t = int(tgt_rows[j])
            cls = int(logits[j].argmax())
            items.append(
                ImageCounterfactual(
                    x=x[i : i + 1].detach().clone(),
                    x_cf=x_cf[j : j + 1].detach().to(out_device),
                    original_class=int(orig[i]),
                    cf_class=cls,
                    target=None if t < 0 else t,
                    valid=bool(flipped[j]),
                    l1=float(l1[j]),
                    l2=float(l2[j]),
                    linf=float((x_cf[j] - x_rows[j]).abs().max()),
                    changed_fraction=float(changed),
                    distance=opts.distance,
                    original_prob=float(probs0[i, orig[i]]),
                    cf_prob=float(probs[j, cls]),
                    margin=float(margin[j]),
                    trade_off=float(state.best_c[j]) if bool(state.found[j]) else math.nan,
                    iterations=state.iterations,
                    seed=int(seed),
                    change_tol=opts.change_tol,
                )
            )
        results.append(items)
    return results


def image_counterfactual(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    distance: Distance = "l2",
    seed: int = 0,
    **options: Any,
) -> ImageCounterfactual:
    """The smallest change to x [1, C, H, W] that flips the model's decision (to `target` if given).

    Minimises dist + c * max(margin + kappa, 0) on the logits, with Adam (L2, squared distance) or
    FISTA with soft thresholding (L1, elastic net with `l2_weight`), clamping into `input_range`
    after every step and bisecting the trade-off c per restart. A final refinement scales the change
    towards x (and for L1 zeroes its smallest entries) while the flip holds.

    Options (keyword): input_range=(0, 1) (low, high: numbers or one per channel), levels=None (e.g. 256:
    the result is snapped to the 8-bit grid of each channel's range and judged there), max_iter=200,
    binary_steps=5, lr=0.01, c_init=1.0, kappa=0.0 (extra logit margin), l2_weight=0.0, restarts=4
    (seeded noisy starts, batched), init_noise=0.05, change_tol=1e-3 (of the channel's range width, for
    changed_fraction), refine=True.
    The model is used as given (put it in eval mode); its parameters are not modified.
    """
    opts = _options(distance, options)
    _check_input(x, opts)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one sample [1, C, H, W], got {tuple(x.shape)}; use image_counterfactuals")
    _warn_training(model)
    if target is not None:
        with torch.no_grad():
            current = int(model(x.detach().to(device_of(model), _dtype_of(model))).argmax(dim=1)[0])
        if current == int(target):
            raise ValueError(f"the model already predicts the target class {target} for x")
    return _run(model, x, [target], opts, seed, rows_per_sample=opts.restarts)[0][0]


def image_counterfactuals(
    model: nn.Module,
    X: torch.Tensor,
    targets: Sequence[int | None] | int | None = None,
    distance: Distance = "l2",
    seed: int = 0,
    *,
    batch_size: int = 16,
    progress: Progress | None = None,
    **options: Any,
) -> CounterfactualSet:
    """One counterfactual per sample of X [N, C, H, W], searched `batch_size` samples at a time.

    `targets`: None (untargeted), one class for all, or one entry (class or None) per sample.
    `progress(fraction, message)` is called after each batch. Other options as `image_counterfactual`.
    """
    opts = _options(distance, options)
    _check_input(X, opts, "X")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = X.shape[0]
    if targets is None or isinstance(targets, int):
        per_sample: list[int | None] = [targets] * n
    else:
        per_sample = list(targets)
        if len(per_sample) != n:
            raise ValueError(f"targets must have one entry per sample ({n}), got {len(per_sample)}")
    _warn_training(model)
    items: list[ImageCounterfactual] = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        chunk = _run(model, X[start:stop], per_sample[start:stop], opts, seed + start, rows_per_sample=opts.restarts)
        items += [c[0] for c in chunk]
        if progress is not None:
            progress(stop / n, f"counterfactuals {stop}/{n}")
    result = _summarise(items, pairwise=False)
    already = sum(1 for c in items if c.target is not None and c.target == c.original_class)
    if already:
        result.warnings.append(f"{already} sample(s) are already predicted as their target (no change needed)")
    return result


def diverse_counterfactuals(
    model: nn.Module,
    x: torch.Tensor,
    k: int = 4,
    *,
    targets: Sequence[int | None] | Literal["top"] | None = "top",
    distance: Distance = "l2",
    seed: int = 0,
    diversity_weight: float = 0.1,
    **options: Any,
) -> CounterfactualSet:
    """k different counterfactuals of x [1, C, H, W], searched jointly in one batch.

    Diversity comes from three sources: different targets (`"top"`: the k classes the model ranks
    next after its decision, cycling when there are fewer), different seeded starts, and a term that
    rewards distance to the other k - 1 candidates (`diversity_weight`). `targets=None` keeps all k
    untargeted; a list gives one target (or None) per counterfactual.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    opts = _options(distance, {**options, "diversity_weight": diversity_weight})
    _check_input(x, opts)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one sample [1, C, H, W], got {tuple(x.shape)}")
    _warn_training(model)
    if targets == "top":
        with torch.no_grad():
            logits = model(x.detach().to(device_of(model), _dtype_of(model)))[0]
        ranked = logits.argsort(descending=True).tolist()[1:]
        row_targets: list[int | None] = [ranked[i % len(ranked)] for i in range(k)]
    elif targets is None:
        row_targets = [None] * k
    else:
        row_targets = list(targets)
        if len(row_targets) != k:
            raise ValueError(f"targets must have k={k} entries, got {len(row_targets)}")
    # Each row is its own counterfactual, so every row gets noise except the first.
    rows = _run(model, x, [None], opts, seed, rows_per_sample=k, row_targets=[row_targets], diverse=True)[0]
    return _summarise(rows, pairwise=True)


def _options(distance: Any, options: dict[str, Any]) -> SearchOptions:
    known = set(SearchOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid options: {sorted(known - {'distance'})}")
    if "input_range" in options:
        options = {**options, "input_range": _normalised_range(options["input_range"])}
    opts = SearchOptions(distance=distance, **options)
    opts.validate()
    return opts


def _normalised_range(value: Any) -> tuple[Bound, Bound]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be (low, high), got {value!r}") from None

    def one(bound: Any) -> Bound:
        if isinstance(bound, torch.Tensor):
            bound = bound.tolist()
        if isinstance(bound, (list, tuple)):
            return tuple(float(v) for v in bound)
        return float(bound)

    return one(low), one(high)


def _dtype_of(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if torch.is_floating_point(p):
            return p.dtype
    return torch.float32


def _warn_training(model: nn.Module) -> None:
    if model.training:
        logger.warning("the model is in training mode; call model.eval() for deterministic counterfactuals")


def _summarise(items: list[ImageCounterfactual], *, pairwise: bool) -> CounterfactualSet:
    valid = [c for c in items if c.valid]
    notes = []
    if len(valid) < len(items):
        notes.append(f"{len(items) - len(valid)} of {len(items)} searches found no valid counterfactual")
    nan = math.nan
    div1 = div2 = nan
    if pairwise and len(valid) >= 2:
        flat = torch.cat([c.x_cf.flatten(1).float().cpu() for c in valid])
        iu = torch.triu_indices(len(valid), len(valid), offset=1)
        div1 = float(torch.cdist(flat, flat, p=1)[iu[0], iu[1]].mean())
        div2 = float(torch.cdist(flat, flat, p=2)[iu[0], iu[1]].mean())
    return CounterfactualSet(
        items=items,
        validity=len(valid) / len(items) if items else nan,
        proximity_l1=sum(c.l1 for c in valid) / len(valid) if valid else nan,
        proximity_l2=sum(c.l2 for c in valid) / len(valid) if valid else nan,
        sparsity=sum(c.changed_fraction for c in valid) / len(valid) if valid else nan,
        diversity_l1=div1,
        diversity_l2=div2,
        warnings=notes,
    )
