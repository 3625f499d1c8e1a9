"""The one shared forward(+backward) pass that serves every fused method at once.

It also finds the default CAM layer in that same forward, and the feature maps and linear head
CAM needs, verified numerically.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .context import ExplainContext, SharedPass
from .hooks import capture_io, capture_layer
from .layers import (
    NO_CONV,
    global_pool_modules,
    linear_modules,
    to_spatial,
    trace_feature_maps,
)

if TYPE_CHECKING:
    from .base import AttributionMethod

NOT_GAP_MODEL = (
    "CAM needs logits that are one linear layer applied to globally average-pooled feature maps "
    "(e.g. SmallCNN or a resnet); {model} does not have that structure. Use gradcam instead."
)


def run_shared_pass(ctx: ExplainContext, methods: list[AttributionMethod]) -> SharedPass:
    """One forward (+ one backward if any method needs gradients) serving all fused methods."""
    need_layer = any(m.needs_layer for m in methods)
    need_cam = any(m.needs_cam_features for m in methods)
    t0, c0 = time.perf_counter(), time.process_time()
    io_modules: dict[str, nn.Module] = {}
    if need_cam:
        io_modules = {**global_pool_modules(ctx.model), **linear_modules(ctx.model)}
    find_layer = (need_layer or need_cam) and ctx.layer_pending
    if find_layer:  # the default layer is found in this same forward
        layer_cm: Any = trace_feature_maps(ctx.model, keep=True)
    elif need_layer or need_cam:
        layer_cm = capture_layer(ctx.layer.module)
    else:
        layer_cm = contextlib.nullcontext()
    try:
        return _shared_pass(ctx, methods, layer_cm, io_modules, find_layer, t0, c0)
    except _ReadAgain:
        # a later in-place op changed the map after it was recorded: read it again through the
        # capture hook, which hands downstream a copy (one more forward)
        return run_shared_pass(ctx, methods)


class _ReadAgain(Exception):
    pass


def _shared_pass(
    ctx: ExplainContext,
    methods: list[AttributionMethod],
    layer_cm: Any,
    io_modules: dict[str, nn.Module],
    find_layer: bool,
    t0: float,
    c0: float,
) -> SharedPass:
    need_input = any(m.needs_input_grad for m in methods)
    need_layer = any(m.needs_layer for m in methods)
    need_layer_grad = any(m.needs_layer_grad for m in methods)
    need_cam = any(m.needs_cam_features for m in methods)
    # Gradients reach the layer only through the input when the parameters are frozen.
    x = ctx.inputs.detach().clone().requires_grad_(need_input or need_layer_grad)
    with layer_cm as rec, capture_io(io_modules) as io:
        grad_needed = need_input or need_layer_grad
        with torch.set_grad_enabled(grad_needed):
            logits = ctx.forward(x)
            if ctx.targets.numel() == 0:  # explain the predicted classes
                ctx.targets = logits.detach().argmax(1)
            if find_layer:
                found = rec.final()
                if found is None:
                    raise ValueError(NO_CONV.format(model=type(ctx.model).__name__))
                ctx._layer = found.layer
                if not found.intact:
                    raise _ReadAgain
                rec = _Recorded(found.output)
            if rec is not None and rec.output is None:
                raise ValueError(f"layer {ctx.layer.name!r} was not called during the forward pass")
            wrt: list[torch.Tensor] = []
            if need_input:
                wrt.append(x)
            if need_layer_grad:
                wrt.append(rec.output)  # type: ignore[union-attr]
            grads: tuple[torch.Tensor, ...] = ()
            if wrt:
                score = logits.gather(1, ctx.targets.view(-1, 1)).squeeze(1)
                grads = ctx.grad(score, wrt, ctx.batch)
        shared = SharedPass(logits=logits.detach())
        if need_input:
            shared.input_grad = grads[0].detach().float()
        if rec is not None and rec.output is not None:
            raw = rec.output.detach().float()
            if need_layer:
                shared.layer_act = to_spatial(raw, ctx.layer.name)
            if need_layer_grad:
                shared.layer_grad = to_spatial(grads[-1].detach().float(), ctx.layer.name)
        if need_cam:
            pools = global_pool_modules(ctx.model)
            candidates = [o[0] for name, outs in io.seen.items() if name in pools for o in outs]
            if rec is not None and rec.output is not None and rec.output.ndim == 4:
                candidates.append(rec.output)
            found = find_gap_linear(ctx.model, candidates, io, logits.detach())
            if isinstance(found, str):
                shared.cam_error = found
            else:
                shared.cam_features, shared.cam_weight = found
    ctx.set_logits(shared.logits)
    shared.time_s = time.perf_counter() - t0
    shared.cpu_s = time.process_time() - c0
    return shared


@dataclass
class _Recorded:
    output: torch.Tensor | None


def find_gap_linear(
    model: nn.Module,
    candidates: list[torch.Tensor],
    io: object,
    logits: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Find feature maps A and a Linear W with logits = W . mean_hw(A) + b, checked numerically."""
    linears = linear_modules(model)
    seen = getattr(io, "seen", {})
    scale = float(logits.abs().max().clamp_min(1.0))
    for feats in candidates:
        if feats.ndim != 4:
            continue
        pooled = feats.detach().float().mean(dim=(2, 3))
        for name, lin in linears.items():
            if lin.in_features != pooled.shape[1] or lin.out_features != logits.shape[1]:
                continue
            for lin_in, lin_out in seen.get(name, []):
                if lin_out.shape != logits.shape:
                    continue
                same_out = torch.allclose(lin_out.detach().float(), logits, atol=1e-4 * scale, rtol=1e-3)
                in_flat = lin_in.detach().float().reshape(lin_in.shape[0], -1)
                pscale = float(pooled.abs().max().clamp_min(1.0))
                same_in = in_flat.shape == pooled.shape and torch.allclose(
                    in_flat, pooled, atol=1e-4 * pscale, rtol=1e-3
                )
                if same_out and same_in:
                    return feats.detach().float(), lin.weight.detach().float()
    return NOT_GAP_MODEL.format(model=type(model).__name__)
