"""The execution context and the three method-family bases (gradient, CAM, perturbation).

The context owns every model evaluation (counted, batched to a memory budget, optionally under
the fast precision path); a method module only says what differs for its method.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import HookBundle, capture_io, capture_layer
from .layers import ResolvedLayer, global_pool_modules, linear_modules, resolve_layer, to_spatial
from .options import AttributionOptions

log = logging.getLogger(__name__)

MakeBatch = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]

NOT_GAP_MODEL = (
    "CAM needs logits that are one linear layer applied to globally average-pooled feature maps "
    "(e.g. SmallCNN or a resnet); {model} does not have that structure. Use gradcam instead."
)

CPU_BUDGET_BYTES = 1 << 30
CPU_MAX_CHUNK = 64
CUDA_MAX_CHUNK = 1024


@dataclass
class PassCounter:
    """Model evaluations made so far: calls and samples, forward and backward."""

    forward_calls: int = 0
    forward_samples: int = 0
    backward_calls: int = 0
    backward_samples: int = 0

    def snapshot(self) -> tuple[int, int, int, int]:
        return (self.forward_calls, self.forward_samples, self.backward_calls, self.backward_samples)


@dataclass
class SharedPass:
    """What the one fused forward(+backward) pass produced for the fused methods."""

    logits: torch.Tensor
    input_grad: torch.Tensor | None = None
    layer_act: torch.Tensor | None = None  # [B, C, h, w], float32
    layer_grad: torch.Tensor | None = None
    cam_features: torch.Tensor | None = None  # features entering global average pooling
    cam_weight: torch.Tensor | None = None  # rows of the final linear layer [classes, C]
    cam_error: str | None = None
    time_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class ExplainContext:
    """Model, inputs and options for one ``explain`` call, plus every shared resource."""

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    options: AttributionOptions
    layer_arg: nn.Module | str | None = None
    counter: PassCounter = field(default_factory=PassCounter)
    fast: bool = False
    heavy: nn.Module | None = None  # inference-optimised copy for the many-evaluation methods
    shared: SharedPass | None = None
    _logits: torch.Tensor | None = None
    _layer: ResolvedLayer | None = None
    _sample_bytes: int | None = None
    n_classes: int | None = None

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def batch(self) -> int:
        return self.inputs.shape[0]

    @property
    def layer(self) -> ResolvedLayer:
        if self._layer is None:
            self._layer = resolve_layer(self.model, self.layer_arg)
        return self._layer

    # ---- precision -------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if not self.fast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def prepare(self, x: torch.Tensor, heavy: bool) -> torch.Tensor:
        if heavy and x.ndim == 4 and (self.fast or self.heavy is not None):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # ---- counted evaluations ---------------------------------------------------------------
    def forward(self, x: torch.Tensor, *, heavy: bool = False) -> torch.Tensor:
        """One counted forward; returns float32 logits [N, classes].

        ``heavy`` evaluations (no hooks needed) run on the optimised copy when there is one.
        """
        model = self.heavy if (heavy and self.heavy is not None) else self.model
        with self.autocast() if heavy else contextlib.nullcontext():
            out = model(self.prepare(x, heavy))
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise TypeError(
                "the model must return logits of shape [B, classes]; got "
                f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else tuple(out.shape)}"
            )
        if self.n_classes is None:
            self.n_classes = out.shape[1]
            self.check_targets()
        self.counter.forward_calls += 1
        self.counter.forward_samples += x.shape[0]
        return out.float()

    def check_targets(self) -> None:
        if self.n_classes is None or self.targets.numel() == 0:
            return
        bad = self.targets[(self.targets < 0) | (self.targets >= self.n_classes)]
        if bad.numel():
            raise ValueError(f"target class {int(bad[0])} is outside the model's {self.n_classes} outputs")

    def grad(self, score: torch.Tensor, wrt: list[torch.Tensor], samples: int) -> tuple[torch.Tensor, ...]:
        """Gradients of the summed per-sample scores; samples are independent in eval mode."""
        grads = torch.autograd.grad(score.sum(), wrt)
        self.counter.backward_calls += 1
        self.counter.backward_samples += samples
        return grads

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            with torch.no_grad():
                self._logits = self.forward(self.inputs)
        return self._logits

    def set_logits(self, logits: torch.Tensor) -> None:
        self._logits = logits.detach()

    # ---- batching --------------------------------------------------------------------------
    def sample_bytes(self) -> int:
        """Activation bytes one sample produces in a forward (leaf module outputs), measured once."""
        if self._sample_bytes is None:
            total = 0

            def hook(_m: nn.Module, _i: object, out: object) -> None:
                nonlocal total
                if isinstance(out, torch.Tensor):
                    total += out.numel() * out.element_size()

            leaves = [m for m in self.model.modules() if not any(True for _ in m.children())]
            with HookBundle() as bundle, torch.no_grad():
                for leaf in leaves:
                    bundle.forward(leaf, hook)
                self.forward(self.inputs[:1])
            self._sample_bytes = max(total, self.inputs[:1].numel() * 4)
        return self._sample_bytes

    def budget_bytes(self) -> int:
        if self.options.memory_budget_bytes is not None:
            return self.options.memory_budget_bytes
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return free // 2
        return CPU_BUDGET_BYTES

    def chunk(self, *, with_grad: bool) -> int:
        """Samples per evaluation: the user's batch_size, else what the memory budget allows."""
        if self.options.batch_size is not None:
            return self.options.batch_size
        cap = CUDA_MAX_CHUNK if self.device.type == "cuda" else CPU_MAX_CHUNK
        per = self.sample_bytes() * (3 if with_grad else 1)
        return int(max(1, min(cap, self.budget_bytes() // max(per, 1))))

    def estimated_peak(self, *, with_grad: bool) -> int | None:
        """Planner's activation-memory estimate; None when no probe ran (batch_size was given)."""
        if self._sample_bytes is None:
            return None
        return self.chunk(with_grad=with_grad) * self._sample_bytes * (3 if with_grad else 1)

    def grads_over(self, total: int, make: MakeBatch) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """Input gradients of the target score for ``total`` generated samples, in chunks.

        ``make(start, stop)`` returns (inputs, targets) for that slice. Yields (start, stop,
        gradients, target scores).
        """
        step = self.chunk(with_grad=True)
        for start in range(0, total, step):
            stop = min(total, start + step)
            x, tgt = make(start, stop)
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.forward(x, heavy=True)
                score = logits.gather(1, tgt.view(-1, 1)).squeeze(1)
                (g,) = self.grad(score, [x], stop - start)
            yield start, stop, g.detach().float(), score.detach()

    def scores_over(self, total: int, make: MakeBatch, *, kind: str = "logit") -> torch.Tensor:
        """Target scores (``logit`` or ``prob``) of ``total`` generated samples, no gradients."""
        step = self.chunk(with_grad=False)
        out = torch.empty(total, device=self.device)
        with torch.no_grad():
            for start in range(0, total, step):
                stop = min(total, start + step)
                x, tgt = make(start, stop)
                logits = self.forward(x, heavy=True)
                if kind == "prob":
                    logits = logits.softmax(1)
                out[start:stop] = logits.gather(1, tgt.view(-1, 1)).squeeze(1)
        return out

    # ---- layer activations without gradients (Score-CAM, CAM alone) ------------------------
    def layer_activations(self) -> torch.Tensor:
        if self.shared is not None and self.shared.layer_act is not None:
            return self.shared.layer_act
        with capture_layer(self.layer.module) as rec, torch.no_grad():
            logits = self.forward(self.inputs)
        self.set_logits(logits)
        if rec.output is None:
            raise ValueError(f"layer {self.layer.name!r} was not called during the forward pass")
        return to_spatial(rec.output.detach().float(), self.layer.name)


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel) upsampling of [B, h, w] maps to the input size."""
    return F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


# ---- method bases -------------------------------------------------------------------------

class AttributionMethod:
    """A method reads the context and returns raw attributions; it never normalises."""

    name: ClassVar[str]
    family: ClassVar[str]
    fused: ClassVar[bool] = False  # served by the shared forward+backward pass
    needs_input_grad: ClassVar[bool] = False
    needs_layer: ClassVar[bool] = False
    needs_layer_grad: ClassVar[bool] = False
    needs_cam_features: ClassVar[bool] = False

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        raise NotImplementedError


class GradientMethod(AttributionMethod):
    """Input-space methods built from gradients of the target logit with respect to the input."""

    family = "gradient"

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        if self.fused:
            if ctx.shared is None or ctx.shared.input_grad is None:
                raise RuntimeError(f"{self.name} needs the shared gradient pass, which did not run")
            return self.from_gradient(ctx, ctx.shared.input_grad)
        return self.compute(ctx)

    def from_gradient(self, ctx: ExplainContext, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        raise NotImplementedError


class CamMethod(AttributionMethod):
    """Class activation maps: ReLU(sum_k w_k A_k) on a layer's maps, upsampled to the input.

    Subclasses say how the channel weights w_k arise; the ReLU is the methods' own definition and
    the only post-processing (no min-max scaling).
    """

    family = "cam"
    fused = True
    needs_layer = True

    def features(self, ctx: ExplainContext) -> torch.Tensor:
        if ctx.shared is not None and ctx.shared.layer_act is not None:
            return ctx.shared.layer_act
        return ctx.layer_activations()

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        acts = self.features(ctx)
        weights = self.channel_weights(ctx, acts)
        cam = torch.relu(torch.einsum("bk,bkhw->bhw", weights.float(), acts.float()))
        return upsample(cam, tuple(ctx.inputs.shape[-2:]))


class PerturbationMethod(AttributionMethod):
    """Methods that only evaluate the model on perturbed inputs (batched, under no_grad)."""

    family = "perturbation"


# ---- shared pass --------------------------------------------------------------------------

def run_shared_pass(ctx: ExplainContext, methods: list[AttributionMethod]) -> SharedPass:
    """One forward (+ one backward if any method needs gradients) serving all fused methods."""
    need_input = any(m.needs_input_grad for m in methods)
    need_layer = any(m.needs_layer for m in methods)
    need_layer_grad = any(m.needs_layer_grad for m in methods)
    need_cam = any(m.needs_cam_features for m in methods)
    t0, c0 = time.perf_counter(), time.process_time()
    # Gradients reach the layer only through the input when the parameters are frozen.
    x = ctx.inputs.detach().clone().requires_grad_(need_input or need_layer_grad)
    io_modules: dict[str, nn.Module] = {}
    if need_cam:
        io_modules = {**global_pool_modules(ctx.model), **linear_modules(ctx.model)}
    layer_cm = capture_layer(ctx.layer.module) if (need_layer or need_cam) else contextlib.nullcontext()
    with layer_cm as rec, capture_io(io_modules) as io:
        grad_needed = need_input or need_layer_grad
        with torch.set_grad_enabled(grad_needed):
            logits = ctx.forward(x)
            if ctx.targets.numel() == 0:  # explain the predicted classes
                ctx.targets = logits.detach().argmax(1)
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


def fraction_range(x: torch.Tensor) -> torch.Tensor:
    """Per-sample value range (max - min over all non-batch dims), shaped for broadcasting."""
    flat = x.flatten(1)
    rng = flat.max(1).values - flat.min(1).values
    return rng.view(-1, *([1] * (x.ndim - 1)))


def isqrt_ceil(n: int) -> int:
    return int(math.ceil(math.sqrt(n)))
