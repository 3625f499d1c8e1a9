"""Image counterfactuals: the smallest change to an input that flips the model's decision.

The entry points: validate, run the batched search (`optimise`) over restarts and samples, refine
(`refine`), and judge validity on the point as shown and stored (`search_box.Box.project`)."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from audit.attribution.memory import batch_for
from audit.attribution.seeding import sample_seeds, torch_generator
from audit.counterfactuals._common import device_of, is_flipped, margin_of
from audit.counterfactuals.image_results import (
    CounterfactualSet,
    ImageCounterfactual,
    summarise,
)
from audit.counterfactuals.optimise import norms, search
from audit.counterfactuals.refine import grow, refine
from audit.counterfactuals.search_box import (
    Box,
    Distance,
    SearchOptions,
    check_input,
    search_options,
)

__all__ = ["CounterfactualSet", "Distance", "ImageCounterfactual", "SearchOptions", "diverse_counterfactuals",
           "image_counterfactual", "image_counterfactuals"]

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


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
    box = Box.of(opts, x.shape[1], dev, x_dev.dtype)
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

    # Restart k starts from x itself (k = 0) or from x plus uniform noise, with its own c. The noise of a
    # sample's rows is drawn from (seed, the sample), so its result does not depend on its batch.
    noise = torch.cat([torch.rand((r, *x.shape[1:]), generator=torch_generator(s)) for s in
                       sample_seeds(int(seed), x, salt="counterfactual")]) * 2.0 - 1.0
    noise = noise * opts.init_noise
    restart = torch.arange(x_rows.shape[0]) % r
    noise[restart == 0] = 0.0
    init = x_rows + noise.to(dev, x_dev.dtype) * box.width
    c_scale = torch.tensor([10.0 ** ((k % 3) - 1 if k else 0) for k in restart.tolist()], device=dev)
    c0 = opts.c_init * c_scale
    groups = torch.arange(n, device=dev).repeat_interleave(r) if diverse else None

    state = search(model, x_rows, orig_rows, tgt_rows, c0, init, opts, box, groups)
    delta = torch.where(state.found.view(-1, 1, 1, 1), state.best_delta, state.closest_delta)
    found = state.found
    if bool(found.any()) and (opts.refine or box.levels is not None):
        with torch.no_grad():
            args = (x_rows[found], delta[found], orig_rows[found], tgt_rows[found])
            settled = refine(model, *args, opts, box) if opts.refine else grow(model, *args, box)
        delta = delta.clone()
        delta[found] = settled

    # Validity is judged on the point as it is returned (shown, stored): projected, on the grid.
    with torch.no_grad():
        x_cf = box.project(x_rows + delta)
        logits = model(x_cf)
    flipped = is_flipped(logits, orig_rows, tgt_rows)
    margin = margin_of(logits, orig_rows, tgt_rows)
    l1, l2 = norms(x_cf - x_rows)
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
                    iterations=int(state.iterations[j]),
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
    opts = search_options(distance, options)
    check_input(x, opts)
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
    batch_size: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> CounterfactualSet:
    """One counterfactual per sample of X [N, C, H, W], searched `batch_size` samples at a time (None: as
    many as `batch_for` allows gradient rows of this input size on the model's device, restarts included).

    A sample's counterfactual depends on (seed, the sample) only, not on its batch or position in it.

    `targets`: None (untargeted), one class for all, or one entry (class or None) per sample.
    `progress(fraction, message)` is called after each batch. Other options as `image_counterfactual`.
    """
    opts = search_options(distance, options)
    check_input(X, opts, "X")
    if batch_size is None:
        rows = batch_for(X[0].numel() if len(X) else 1, device=device_of(model), with_grad=True, cap=16 * opts.restarts)
        batch_size = max(1, rows // opts.restarts)
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
        chunk = _run(model, X[start:stop], per_sample[start:stop], opts, seed, rows_per_sample=opts.restarts)
        items += [c[0] for c in chunk]
        if progress is not None:
            progress(stop / n, f"counterfactuals {stop}/{n}")
    result = summarise(items, pairwise=False)
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
    opts = search_options(distance, {**options, "diversity_weight": diversity_weight})
    check_input(x, opts)
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
    return summarise(rows, pairwise=True)


def _dtype_of(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if torch.is_floating_point(p):
            return p.dtype
    return torch.float32


def _warn_training(model: nn.Module) -> None:
    if model.training:
        logger.warning("the model is in training mode; call model.eval() for deterministic counterfactuals")


