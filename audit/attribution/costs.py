"""Cost estimates per method (model evaluations, FLOPs, peak memory) for the cost estimator.

One forward of a single zero sample with hooks counts conv/linear multiply-accumulates and the
activation bytes; each method's evaluations come from its own declaration (``evaluations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .base import Evaluations, ExplainContext, Geometry
from .hooks import HookBundle, capture_layer
from .layers import to_spatial
from .options import AttributionOptions
from .planner import eval_mode, model_device
from .registry import check_methods, method_class, registered


@dataclass(frozen=True)
class MethodCost:
    """Estimated cost of one method on a batch. Fused methods share one pass: count it once."""

    method: str
    forward_samples: int
    backward_samples: int
    flops: float
    peak_mem_bytes: int
    shared_pass: bool


def count_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one forward of ``sample``."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _i: object, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    def lin_hook(m: nn.Linear, _i: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * m.in_features

    with HookBundle() as bundle, torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                bundle.forward(m, conv_hook)
            elif isinstance(m, nn.Linear):
                bundle.forward(m, lin_hook)
        model(sample)
    return macs


def method_costs(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    methods: Sequence[str] | None = None,
    batch: int = 1,
    layer: nn.Module | str | None = None,
    **options: object,
) -> dict[str, MethodCost]:
    """Estimate evaluations, FLOPs (2 x MACs per evaluation; a backward counted as one forward)
    and peak memory for each method on ``batch`` inputs of ``input_shape`` (C, H, W)."""
    if methods is None:
        methods = [name for name, cls in registered().items() if cls.not_applicable_reason(model) is None]
    names = check_methods(list(methods))
    opts = AttributionOptions.from_kwargs(**options)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    classes = {name: method_class(name) for name in names}
    device = model_device(model)
    sample = torch.zeros((1, *input_shape), device=device)
    with eval_mode(model):
        macs = count_macs(model, sample)
        ctx = ExplainContext(model=model, inputs=sample, targets=torch.zeros(1, dtype=torch.long, device=device),
                             options=opts, layer_arg=layer)
        per_sample = ctx.sample_bytes()
        channels = None
        if any(cls.needs_layer for cls in classes.values()):
            channels = _layer_channels(ctx, sample)
        grad_chunk = ctx.chunk(with_grad=True)
        fwd_chunk = ctx.chunk(with_grad=False)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    geometry = Geometry(batch=batch, height=input_shape[1], width=input_shape[2], layer_channels=channels)
    out: dict[str, MethodCost] = {}
    for name, cls in classes.items():
        ev: Evaluations = cls.evaluations(opts, geometry)
        with_grad = ev.backward > 0
        chunk = grad_chunk if with_grad else fwd_chunk
        live = min(chunk, max(ev.forward, 1))
        mem = param_bytes + live * per_sample * (3 if with_grad else 1)
        out[name] = MethodCost(
            method=name,
            forward_samples=ev.forward,
            backward_samples=ev.backward,
            flops=2.0 * macs * (ev.forward + ev.backward),
            peak_mem_bytes=int(mem),
            # entirely served by the one shared pass, which a plan counts once
            shared_pass=cls.fused and ev.expanded == 0,
        )
    return out


def _layer_channels(ctx: ExplainContext, sample: torch.Tensor) -> int | None:
    """Channels of the CAM layer's map; None where the model has no such layer (then the CAM
    methods fail when run, with the reason, and their estimate counts no per-channel work)."""
    try:
        layer = ctx.layer
    except ValueError:
        return None
    with capture_layer(layer.module) as rec, torch.no_grad():
        ctx.model(sample)
    if rec.output is None:
        return None
    return to_spatial(rec.output, layer.name).shape[1]


def total_cost(costs: dict[str, MethodCost]) -> MethodCost:
    """Sum of a plan's costs, counting the shared pass of fused methods once."""
    fwd = bwd = 0
    flops = 0.0
    peak = 0
    shared_done = False
    for c in costs.values():
        peak = max(peak, c.peak_mem_bytes)
        if c.shared_pass:
            if shared_done:
                continue
            shared_done = True
            fused_bwd = max(x.backward_samples for x in costs.values() if x.shared_pass)
            fwd += c.forward_samples
            bwd += fused_bwd
            flops += c.flops / max(c.forward_samples + c.backward_samples, 1) * (c.forward_samples + fused_bwd)
            continue
        fwd += c.forward_samples
        bwd += c.backward_samples
        flops += c.flops
    return MethodCost("total", fwd, bwd, flops, peak, False)
