"""Cost estimates per method (model evaluations, FLOPs, peak memory) for the cost estimator.

One forward of a single zero sample with hooks counts conv/linear multiply-accumulates and the
activation bytes; each method's cost then follows from how many evaluations it makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .base import ExplainContext
from .hooks import HookBundle, capture_layer
from .layers import to_spatial
from .methods.occlusion import window_masks
from .options import METHODS, AttributionOptions, check_methods
from .planner import eval_mode, model_device

FUSED = ("saliency", "grad_x_input", "cam", "gradcam", "gradcam_pp")


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
    names = check_methods(list(methods) if methods is not None else [m for m in METHODS if m != "attention_rollout"])
    opts = AttributionOptions.from_kwargs(**options)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    device = model_device(model)
    sample = torch.zeros((1, *input_shape), device=device)
    with eval_mode(model):
        macs = count_macs(model, sample)
        ctx = ExplainContext(model=model, inputs=sample, targets=torch.zeros(1, dtype=torch.long, device=device),
                             options=opts, layer_arg=layer)
        per_sample = ctx.sample_bytes()
        channels = 0
        if "scorecam" in names:
            with capture_layer(ctx.layer.module) as rec, torch.no_grad():
                model(sample)
            if rec.output is not None:
                channels = to_spatial(rec.output, ctx.layer.name).shape[1]
        grad_chunk = ctx.chunk(with_grad=True)
        fwd_chunk = ctx.chunk(with_grad=False)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    h, w = input_shape[1:]
    counts: dict[str, tuple[int, int]] = {}
    for name in names:
        if name in FUSED:
            counts[name] = (1, 0 if name == "cam" else 1)
        elif name in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            counts[name] = (opts.sg_samples, opts.sg_samples)
        elif name == "integrated_gradients":
            counts[name] = (opts.ig_steps + 2, opts.ig_steps)
        elif name == "scorecam":
            counts[name] = (1 + channels, 0)
        elif name == "occlusion":
            n = window_masks(h, w, opts.occlusion_window, opts.occlusion_stride, torch.device("cpu")).shape[0]
            counts[name] = (1 + n, 0)
        elif name == "rise":
            counts[name] = (opts.rise_masks, 0)
        elif name == "lime":
            counts[name] = (opts.lime_samples, 0)
        elif name == "shap":
            counts[name] = (opts.shap_samples, opts.shap_samples)
        else:  # attention rollout
            counts[name] = (1, 0)
    out: dict[str, MethodCost] = {}
    for name, (fwd, bwd) in counts.items():
        total_fwd, total_bwd = fwd * batch, bwd * batch
        with_grad = bwd > 0
        chunk = grad_chunk if with_grad else fwd_chunk
        live = min(chunk, max(total_fwd, 1))
        mem = param_bytes + live * per_sample * (3 if with_grad else 1)
        out[name] = MethodCost(
            method=name,
            forward_samples=total_fwd,
            backward_samples=total_bwd,
            flops=2.0 * macs * (total_fwd + total_bwd),
            peak_mem_bytes=int(mem),
            shared_pass=name in FUSED,
        )
    return out


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
