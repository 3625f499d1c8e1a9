"""The execution planner behind ``attribute`` and ``explain``.

It validates inputs, runs ONE forward+backward for all fused methods (saliency, grad_x_input,
cam, gradcam, gradcam_pp; Score-CAM reads its activations), then each remaining method, and
records passes, time, memory and IG completeness per method.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn

from .base import AttributionMethod, ExplainContext, Geometry, MethodNotApplicable
from .engine_record import engine_record, model_precision
from .optimize import (
    AUTO_MIN_EVALUATIONS,
    build_inference_copy,
    has_conv,
    same_function,
)
from .options import AttributionOptions, MethodName
from .registry import check_methods, method_class
from .shared_pass import run_shared_pass
from .stats import spearman

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[MethodName, ...] = ("saliency", "grad_x_input", "integrated_gradients", "gradcam")

BAD_INPUTS = "inputs must be a float tensor [B, C, H, W]; got {what}"
BAD_TARGETS = "targets must be None, an int, or a long tensor of shape [B] = [{b}]; got {what}"


@dataclass
class MethodInfo:
    """Cost and diagnostics of one method in one run.

    Pass counts are model evaluations (calls and samples); methods served by the shared pass
    report that pass and set ``shared_pass`` so totals count it once.
    """

    method: str
    family: str
    time_s: float
    cpu_s: float
    forward_calls: int
    forward_samples: int
    backward_calls: int
    backward_samples: int
    shared_pass: bool = False
    peak_mem_bytes: int | None = None
    est_peak_mem_bytes: int | None = None
    completeness_delta: torch.Tensor | None = None
    ig_steps_used: torch.Tensor | None = None
    diagnostics: dict[str, object] = field(default_factory=dict)  # what the method's diagnose() reported
    notes: list[str] = field(default_factory=list)
    engine: dict[str, object] = field(default_factory=dict)  # engine_record: precision, model copy, crops


@dataclass
class FastPathReport:
    """Whether the bf16 + channels_last path was requested, passed its fidelity guard and was used."""

    requested: bool
    used: bool
    rank_corr: float | None = None
    threshold: float | None = None
    reason: str = ""


@dataclass
class AttributionResult:
    """Maps per method plus everything needed to audit how they were produced."""

    maps: dict[str, torch.Tensor]
    info: dict[str, MethodInfo]
    logits: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor
    layer: str | None
    fast_path: FastPathReport
    options: dict[str, object]
    device: str
    shared_pass_s: float
    total_time_s: float
    optimized: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it does not apply to the model

    @property
    def total_forward_samples(self) -> int:
        return self._total("forward_samples")

    @property
    def total_backward_samples(self) -> int:
        return self._total("backward_samples")

    def _total(self, attr: str) -> int:
        seen_shared = False
        total = 0
        for info in self.info.values():
            if info.shared_pass:
                if seen_shared:
                    continue
                seen_shared = True
            total += getattr(info, attr)
        return total


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode (so samples stay independent), restoring each module's flag after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _check_inputs(inputs: object) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(BAD_INPUTS.format(what=type(inputs).__name__))
    if inputs.ndim != 4 or not inputs.is_floating_point():
        raise ValueError(BAD_INPUTS.format(what=f"{inputs.dtype} tensor of shape {tuple(inputs.shape)}"))
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contain NaN or infinite values")
    return inputs


def _check_targets(targets: object, batch: int, device: torch.device) -> torch.Tensor | None:
    if targets is None:
        return None
    if isinstance(targets, bool):
        raise TypeError(BAD_TARGETS.format(b=batch, what="bool"))
    if isinstance(targets, int):
        return torch.full((batch,), targets, dtype=torch.long, device=device)
    if isinstance(targets, (list, tuple)):
        targets = torch.as_tensor(targets)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(BAD_TARGETS.format(b=batch, what=type(targets).__name__))
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(BAD_TARGETS.format(b=batch, what=f"{targets.dtype} tensor"))
    targets = targets.reshape(-1) if targets.ndim == 0 else targets
    if targets.ndim == 0 or targets.numel() == 1:
        targets = targets.reshape(1).expand(batch)
    if targets.shape != (batch,):
        raise ValueError(BAD_TARGETS.format(b=batch, what=f"shape {tuple(targets.shape)}"))
    return targets.to(device=device, dtype=torch.long)


def planned_evaluations(
    names: Sequence[str], opts: AttributionOptions, batch: int, size: tuple[int, int], layer_channels: int | None = None
) -> int:
    """Evaluations the methods will make on the inference path, from their declared costs."""
    geometry = Geometry(batch=batch, height=size[0], width=size[1], layer_channels=layer_channels)
    return sum(method_class(n).evaluations(opts, geometry).expanded for n in names)


def _prepare_heavy(ctx: ExplainContext, names: Sequence[str]) -> str:
    """Build and verify the optimised copy when the options ask for it; say what happened."""
    opts = ctx.options
    if opts.optimize is False:
        return "off (optimize=False)"
    channels = None
    if ctx.shared is not None and ctx.shared.layer_act is not None:
        channels = ctx.shared.layer_act.shape[1]
    planned = planned_evaluations(names, opts, ctx.batch, tuple(ctx.inputs.shape[-2:]), channels)
    if opts.optimize is None and (planned < AUTO_MIN_EVALUATIONS or not has_conv(ctx.model)):
        return f"off (auto: {planned} planned evaluations)"
    try:
        copy_ = build_inference_copy(ctx.model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the model as it is
        log.info("optimised copy unavailable: %s", exc)
        return f"off (the model cannot be traced: {type(exc).__name__}: {exc})"
    ok, err = same_function(copy_, ctx.inputs, ctx.logits)
    if not ok:
        return f"off (the folded copy differs from the model by {err:.2e})"
    ctx.heavy = copy_
    return f"on: BatchNorm folded, channels-last copy for {planned} evaluations (max logit diff {err:.1e})"


def _input_gradient(ctx: ExplainContext) -> torch.Tensor:
    """|d score / d input| for the batch (the fidelity guard's cheap map), on the heavy path."""
    x = ctx.inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = ctx.forward(x, heavy=True)
        score = logits.gather(1, ctx.targets.view(-1, 1)).squeeze(1)
        (g,) = ctx.grad(score, [x], ctx.batch)
    return g.detach().float().abs()


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | Sequence[int] | None = None,
    methods: Sequence[MethodName] | MethodName = DEFAULT_METHODS,
    layer: nn.Module | str | None = None,
    **options: object,
) -> AttributionResult:
    """Attribute the target logits of ``model`` at ``inputs`` with each method.

    ``targets`` None explains the predicted class. Each method declares its options (see
    ``method_spec(name).options``; defaults: ig_steps=50, ig_method="gausslegendre", baseline=None (zeros), sg_samples=25,
    sg_stdev=0.15, occlusion_window=16, occlusion_stride=16, seed=0). Input-space methods return
    the inputs' shape; CAM-family and attention maps return [B, H, W]. Nothing is normalised.

    A method that does not apply to the model (CAM without a pooled-then-linear head, attention
    rollout on a CNN) is skipped: it has no map, and ``skipped`` holds its reason.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = check_methods(methods)
    opts = AttributionOptions.from_kwargs(**options)
    device = model_device(model)
    x = _check_inputs(inputs).detach().to(device=device, dtype=torch.float32)
    tgt = _check_targets(targets, x.shape[0], device)
    skipped: dict[str, str] = {}
    instances = []
    for n in names:
        reason = method_class(n).not_applicable_reason(model)
        if reason is None:
            instances.append(method_class(n)())
        else:
            skipped[n] = reason
    t_start = time.perf_counter()
    with eval_mode(model):
        ctx = ExplainContext(model=model, inputs=x, targets=torch.zeros(0, dtype=torch.long), options=opts, layer_arg=layer)
        if tgt is not None:
            ctx.targets = tgt
            ctx.check_targets()
        elif not any(m.fused for m in instances):
            ctx.targets = ctx.logits.argmax(1)
        # otherwise the shared pass picks the predicted classes from its own forward
        result = _run(ctx, instances, opts)
    result.skipped = {**skipped, **result.skipped}
    result.total_time_s = time.perf_counter() - t_start
    return result


def _run(ctx: ExplainContext, instances: list[AttributionMethod], opts: AttributionOptions) -> AttributionResult:
    fused = [m for m in instances if m.fused]
    fast = FastPathReport(requested=opts.fast, used=False)
    maps: dict[str, torch.Tensor] = {}
    info: dict[str, MethodInfo] = {}
    cuda = ctx.device.type == "cuda"
    progress = opts.progress
    reference_grad: torch.Tensor | None = None
    skipped: dict[str, str] = {}

    shared_info: tuple[float, tuple[int, int, int, int]] | None = None
    if fused:
        before = ctx.counter.snapshot()
        ctx.shared = run_shared_pass(ctx, fused)
        after = ctx.counter.snapshot()
        shared_info = (ctx.shared.time_s, tuple(a - b for a, b in zip(after, before)))  # type: ignore[assignment]
        if ctx.shared.input_grad is not None:
            reference_grad = ctx.shared.input_grad.abs()

    optimize_note = _prepare_heavy(ctx, [m.name for m in instances])
    if opts.fast:
        if reference_grad is None:
            reference_grad = _input_gradient(ctx)
        ctx.fast = True
        trial = _input_gradient(ctx)
        corr = float(spearman(trial.flatten(1), reference_grad.flatten(1)).min())
        fast.rank_corr, fast.threshold = corr, opts.fast_min_rank_corr
        if corr >= opts.fast_min_rank_corr:
            fast.used = True
            fast.reason = "bf16 autocast + channels-last inputs passed the guard"
        else:
            ctx.fast = False
            fast.reason = (
                f"fell back to float32: saliency rank correlation {corr:.3f} with float32 "
                f"is below {opts.fast_min_rank_corr}"
            )
        log.info("fast path: %s", fast.reason)

    precision, fast_record = model_precision(ctx.model), asdict(fast) if fast.requested else None
    for done, method in enumerate(instances):
        if cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        before = ctx.counter.snapshot()
        ctx.evaluated_on = set()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with ctx.scoped_options(method):
                out = method.run(ctx)
        except MethodNotApplicable as exc:  # found at run time (CAM's head is checked numerically)
            skipped[method.name] = str(exc)
            log.info("%s skipped: %s", method.name, exc)
            if progress is not None:
                progress((done + 1) / len(instances), method.name)
            continue
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        counts = tuple(a - b for a, b in zip(ctx.counter.snapshot(), before))
        shared = method.fused and shared_info is not None
        if shared:
            elapsed += shared_info[0] / len(fused)
            cpu += ctx.shared.cpu_s / len(fused)  # type: ignore[union-attr]
            counts = tuple(c + s for c, s in zip(counts, shared_info[1]))
        rec = MethodInfo(
            method=method.name,
            family=method.family,
            time_s=elapsed,
            cpu_s=cpu,
            forward_calls=counts[0],
            forward_samples=counts[1],
            backward_calls=counts[2],
            backward_samples=counts[3],
            shared_pass=shared,
            peak_mem_bytes=torch.cuda.max_memory_allocated(ctx.device) if cuda else None,
            est_peak_mem_bytes=ctx.estimated_peak(with_grad=method.family != "perturbation")
            if method.family in ("gradient", "perturbation") and not method.fused
            else None,
        )
        if shared:
            rec.notes.append(f"shared forward+backward with: {', '.join(m.name for m in fused)}")
        rec.engine = engine_record(ctx.evaluated_on, fast_record, precision=precision)
        rec.diagnostics = dict(method.diagnose())
        rec.completeness_delta = rec.diagnostics.get("completeness_delta")  # type: ignore[assignment]
        rec.ig_steps_used = rec.diagnostics.get("ig_steps_used")  # type: ignore[assignment]
        if not torch.isfinite(out).all():
            rec.notes.append("map contains non-finite values")
            log.warning("%s produced non-finite values", method.name)
        maps[method.name] = out.detach()
        info[method.name] = rec
        if progress is not None:
            progress((done + 1) / len(instances), method.name)

    if not opts.fast:
        fast.reason = "not requested"
    layer_name = ctx._layer.name if ctx._layer is not None else None
    logits = ctx.logits
    return AttributionResult(
        maps=maps,
        info=info,
        logits=logits,
        probabilities=logits.softmax(1),
        targets=ctx.targets,
        layer=layer_name,
        fast_path=fast,
        options=opts.as_record(),
        device=str(ctx.device),
        shared_pass_s=shared_info[0] if shared_info else 0.0,
        total_time_s=0.0,
        optimized=optimize_note + ("; occlusion windows re-evaluated as crops (incremental)"
                                   if ctx.incremental_used else ""),
        skipped=skipped,
    )


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | Sequence[int] | None = None,
    methods: Sequence[MethodName] | MethodName = DEFAULT_METHODS,
    layer: nn.Module | str | None = None,
    **options: object,
) -> dict[str, torch.Tensor]:
    """``explain(...).maps``: a dict method -> raw attribution tensor (see :func:`explain`).

    Every requested method has a map: one that does not apply to the model raises
    ``MethodNotApplicable`` (a ``ValueError``) with its reason (``explain`` skips it instead).
    """
    result = explain(model, inputs, targets, methods, layer, **options)
    if result.skipped:
        method, reason = next(iter(result.skipped.items()))
        raise MethodNotApplicable(f"{method}: {reason}")
    return result.maps
