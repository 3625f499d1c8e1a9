"""The execution context of one ``explain`` call: inputs, options, the CAM layer, and every
model evaluation (counted, batched to a memory budget, optionally on the fast precision path).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from audit.declarations import Declares

from .engine_record import BF16, COPY, CROPS
from .hooks import HookBundle, capture_layer
from .incremental import IncrementalModel
from .layers import ResolvedLayer, is_vision_transformer, resolve_layer, to_spatial
from .memory import batch_for, cpu_budget_bytes
from .options import ENGINE_OPTIONS, AttributionOptions, OptionsView

log = logging.getLogger(__name__)

MakeBatch = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
# (start, stop) -> ((per sample: its clean image's index, its crop (one size for all), the crop's
# top-left corner as rows and columns), the targets)
MakeLocal = Callable[[int, int], tuple[tuple[list[int], torch.Tensor, list[int], list[int]], torch.Tensor]]

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

    def restore(self, snapshot: tuple[int, int, int, int]) -> None:
        self.forward_calls, self.forward_samples, self.backward_calls, self.backward_samples = snapshot

    def count_forward(self, samples: int) -> None:
        self.forward_calls += 1
        self.forward_samples += samples


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
    options: AttributionOptions | OptionsView
    layer_arg: nn.Module | str | None = None
    counter: PassCounter = field(default_factory=PassCounter)
    fast: bool = False
    heavy: nn.Module | None = None  # inference-optimised copy for the many-evaluation methods
    shared: SharedPass | None = None
    _logits: torch.Tensor | None = None
    _layer: ResolvedLayer | None = None
    _sample_bytes: int | None = None
    incremental_used: bool = False  # occlusion windows ran on crops
    incremental_failed: bool = False
    n_classes: int | None = None
    # What the current method's evaluations ran on (engine_record's BF16, COPY, CROPS); the planner
    # empties it before each method and stores it with the method's maps.
    evaluated_on: set[str] = field(default_factory=set)

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def batch(self) -> int:
        return self.inputs.shape[0]

    @property
    def layer(self) -> ResolvedLayer:
        if self._layer is None:
            self._layer = resolve_layer(self.model, self.layer_arg, sample=self.inputs[:1])
        return self._layer

    @property
    def layer_pending(self) -> bool:
        """The default CNN layer is still to be found (the shared pass finds it in its forward)."""
        return (
            self._layer is None
            and self.layer_arg is None
            and not is_vision_transformer(self.model)
            and not isinstance(self.model, torch.jit.ScriptModule)  # resolve_layer says why not
        )

    @contextlib.contextmanager
    def scoped_options(self, method: Declares) -> Iterator[None]:
        """While ``method`` runs it sees only its declared options and the engine's."""
        full = self.options
        self.options = OptionsView.scoped(full, method, ENGINE_OPTIONS)  # type: ignore[arg-type]
        try:
            yield
        finally:
            self.options = full

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
        if heavy and self.heavy is not None:
            self.evaluated_on.add(COPY)
        if heavy and self.fast:
            self.evaluated_on.add(BF16)
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
        self.counter.count_forward(x.shape[0])
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
        if self._sample_bytes is None and isinstance(self.model, torch.jit.ScriptModule):
            self._sample_bytes = max(self._saved_bytes(), self.inputs[:1].numel() * 4)
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

    def _saved_bytes(self) -> int:
        """Bytes autograd keeps for one sample's backward: the measure for models that take no hooks
        (TorchScript), whose leaf outputs cannot be seen one by one."""
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = self.inputs[:1].detach().clone().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.forward(x)
        return total

    def budget_bytes(self) -> int:
        if self.options.memory_budget_bytes is not None:
            return self.options.memory_budget_bytes
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return free // 2
        return cpu_budget_bytes()

    def chunk(self, *, with_grad: bool) -> int:
        """Samples per evaluation: the user's batch_size, else what the memory budget allows."""
        if self.options.batch_size is not None:
            return self.options.batch_size
        cap = CUDA_MAX_CHUNK if self.device.type == "cuda" else batch_for(
            self.inputs[0].numel(), device=self.device, with_grad=with_grad, cap=CPU_MAX_CHUNK)
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

    def scores_over(self, total: int, make: MakeBatch | MakeLocal, *, kind: str = "logit",
                    on: IncrementalModel | None = None) -> torch.Tensor:
        """Target scores (``logit`` or ``prob``) of ``total`` generated samples, no gradients.

        With ``on`` (an incremental copy) the samples differ from its clean images in a crop each, and
        ``make`` returns ((image indices, crops, rows, columns), targets) for ``on.scores``.
        """
        step = self.chunk(with_grad=False)
        out = torch.empty(total, device=self.device)
        with torch.no_grad():
            for start in range(0, total, step):
                stop = min(total, start + step)
                x, tgt = make(start, stop)
                if on is None:
                    logits = self.forward(x, heavy=True)
                else:
                    logits = on.scores(*x).float()
                    self.counter.count_forward(stop - start)
                    self.evaluated_on.add(CROPS)
                if kind == "prob":
                    logits = logits.softmax(1)
                out[start:stop] = logits.gather(1, tgt.view(-1, 1)).squeeze(1)
        return out

    def incremental_images(self) -> int:
        """How many images one incremental copy may hold, so that their clean activations (kept and
        padded) fit the memory budget; 0 when this run does not use the crop path (no traced copy,
        the bf16 path, ``incremental`` off, or an earlier failure)."""
        setting = self.options.incremental
        if setting is None:  # measured on CPU; a GPU's full forwards are not yet measured against it
            setting = self.device.type == "cpu"
        if not setting or self.fast or self.incremental_failed or not isinstance(self.heavy, torch.fx.GraphModule):
            return 0
        return int(max(1, min(self.batch, self.budget_bytes() // max(2 * self.sample_bytes(), 1))))

    def incremental(self, start: int, stop: int) -> IncrementalModel | None:
        """The optimised copy set up for images ``start:stop`` changed in a crop; its clean forward is
        counted. None (and the crop path off for this run) when the graph cannot be served."""
        try:
            model = IncrementalModel(self.heavy, self.prepare(self.inputs[start:stop].float(), True))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - in-place aliasing, several inputs, an untraceable op
            log.info("incremental evaluation unavailable: %s", exc)
            self.incremental_failed = True
            return None
        self.counter.count_forward(stop - start)
        self.incremental_used = True
        return model

    def drop_incremental(self, counted: tuple[int, int, int, int]) -> None:
        """Turn the crop path off after a failure, and forget the evaluations it counted."""
        self.incremental_used = False
        self.incremental_failed = True
        self.counter.restore(counted)
        self.evaluated_on.discard(CROPS)

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
