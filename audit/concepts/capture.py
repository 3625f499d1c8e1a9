"""Shared passes for TCAV: layer activations of every example set (one forward per batch for all
layers) and target-logit gradients of the class inputs (one forward+backward per batch for all layers)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence, Union

import torch
from torch import nn

log = logging.getLogger(__name__)

LayerSpec = Union[str, nn.Module]
TextPooling = Literal["cls", "mean"]


class _ForwardDone(Exception):
    """Raised from a hook once every requested layer has fired, to skip the rest of the forward."""


def resolve_layers(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """(name, module) for each requested layer; names are dotted paths from ``model``."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise ValueError("layers must name at least one layer, e.g. layers=['layer3', 'layer4']")
    names = {id(m): n for n, m in model.named_modules()}
    resolved: list[tuple[str, nn.Module]] = []
    for spec in layers:
        if isinstance(spec, str):
            try:
                module = model.get_submodule(spec)
            except AttributeError:
                known = ", ".join(n for n, _ in list(model.named_modules())[1:12])
                raise ValueError(f"layer {spec!r} is not a submodule of the model (some names: {known}, ...)") from None
            resolved.append((spec, module))
        elif isinstance(spec, nn.Module):
            if id(spec) not in names:
                raise ValueError("a layer module was given that is not part of the model")
            resolved.append((names[id(spec)] or "<model>", spec))
        else:
            raise TypeError(f"a layer is a dotted name or an nn.Module, got {type(spec).__name__}")
    seen = [n for n, _ in resolved]
    if len(set(seen)) != len(seen):
        raise ValueError(f"layers repeat: {seen}")
    if any(m is model for _, m in resolved):
        raise ValueError("the model itself is not a layer: name one of its submodules")
    return resolved


def _main_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a layer output (transformer layers return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"layer output of type {type(output).__name__} holds no tensor to test concepts on")


def _with_main_tensor(output: Any, tensor: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return tensor
    return type(output)((tensor, *output[1:])) if isinstance(output, tuple) else [tensor, *output[1:]]


# --------------------------------------------------------------------------------------------
# How examples become model calls, and how a layer output becomes one vector per example


class Representation:
    """Image-style representation: the flattened layer output of each example."""

    kind = "flatten"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def size(self, data: Any) -> int:
        return len(data)

    def batches(self, data: torch.Tensor, batch_size: int) -> Iterator[Any]:
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size].to(self.device)

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return _logits(model(batch))

    def pool_activation(self, act: torch.Tensor, batch: Any) -> torch.Tensor:
        return act.reshape(act.shape[0], -1)

    def pool_gradient(self, grad: torch.Tensor, batch: Any) -> torch.Tensor:
        return grad.reshape(grad.shape[0], -1)


class TextRepresentation(Representation):
    """Transformer representation: the [CLS] vector, or the mean over non-pad tokens.

    The matching gradient is the derivative of the logit for a shift of the pooled tokens along
    the CAV: the [CLS] gradient for ``cls``, the sum of gradients over non-pad tokens for ``mean``.
    """

    def __init__(self, device: torch.device, tokenizer: Any, pooling: TextPooling, max_length: int) -> None:
        super().__init__(device)
        if pooling not in ("cls", "mean"):
            raise ValueError(f"text_pooling must be 'cls' or 'mean', got {pooling!r}")
        self.tokenizer = tokenizer
        self.kind = pooling
        self.max_length = max_length

    def batches(self, data: Sequence[str], batch_size: int) -> Iterator[Any]:
        for start in range(0, len(data), batch_size):
            enc = self.tokenizer(
                list(data[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            yield {k: v.to(self.device) for k, v in enc.items()}

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return _logits(model(**batch))

    def _mask(self, act: torch.Tensor, batch: Any) -> torch.Tensor:
        mask = batch.get("attention_mask")
        if mask is None:
            return torch.ones(act.shape[:2], dtype=act.dtype, device=act.device)
        return mask.to(act.dtype)

    def pool_activation(self, act: torch.Tensor, batch: Any) -> torch.Tensor:
        if act.ndim != 3:
            raise ValueError(f"a text layer must output [batch, tokens, hidden], got {tuple(act.shape)}")
        if self.kind == "cls":
            return act[:, 0]
        mask = self._mask(act, batch).unsqueeze(-1)
        return (act * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def pool_gradient(self, grad: torch.Tensor, batch: Any) -> torch.Tensor:
        if self.kind == "cls":
            return grad[:, 0]
        return (grad * self._mask(grad, batch).unsqueeze(-1)).sum(1)


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", output)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits [batch, classes], got {shape}")
    return logits


# --------------------------------------------------------------------------------------------
# Hooks: one scoped bundle, removed in finally


@dataclass
class _Store:
    outputs: list[Any]
    calls: list[int]
    stop_when_full: bool = False
    replace_with_clone: bool = False
    batch: Any = None
    pool: Any = None


@contextmanager
def layer_hooks(
    modules: Sequence[nn.Module],
    names: Sequence[str],
    *,
    stop_when_full: bool = False,
    replace_with_clone: bool = False,
) -> Iterator[_Store]:
    """Forward hooks on ``modules`` that record each output; always removed on exit.

    ``replace_with_clone`` (gradient passes) hands later layers a copy, so the recorded tensor is
    the layer's own output even if the model modifies it in place afterwards; gradients are taken
    w.r.t. the recorded tensor.
    ``stop_when_full`` ends the forward once every layer fired (activation passes need no logits).
    """
    store = _Store(outputs=[None] * len(modules), calls=[0] * len(modules), stop_when_full=stop_when_full,
                   replace_with_clone=replace_with_clone)
    handles = []

    def make_hook(i: int):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            store.calls[i] += 1
            if store.calls[i] > 1:
                raise ValueError(
                    f"layer {names[i]!r} runs more than once per forward pass; TCAV needs a layer with one "
                    "output per input"
                )
            tensor = _main_tensor(output)
            if store.replace_with_clone and not tensor.requires_grad:
                # nothing upstream needs gradients (frozen weights, token ids): start the graph here
                tensor = tensor.detach().requires_grad_(True)
            if store.pool is not None:
                # pooled (and copied) at once, so later in-place ops cannot alter what is kept
                store.outputs[i] = store.pool(tensor.detach(), store.batch).float().clone()
            else:
                store.outputs[i] = tensor
            if store.stop_when_full and all(c > 0 for c in store.calls):
                raise _ForwardDone
            if store.replace_with_clone:
                return _with_main_tensor(output, tensor.clone())
            return None

        return hook

    try:
        for i, module in enumerate(modules):
            handles.append(module.register_forward_hook(make_hook(i)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode for the passes (no dropout, frozen batch-norm statistics); each module's
    own mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _reset(store: _Store, batch: Any) -> None:
    store.outputs = [None] * len(store.outputs)
    store.calls = [0] * len(store.calls)
    store.batch = batch


def collect_activations(
    model: nn.Module,
    modules: Sequence[nn.Module],
    data: Any,
    rep: Representation,
    *,
    batch_size: int,
    layer_names: Sequence[str],
) -> list[torch.Tensor]:
    """Pooled activations [N, D] (float32, on the model's device) of ``data`` at every layer, one
    forward per batch."""
    chunks: list[list[torch.Tensor]] = [[] for _ in modules]
    with torch.no_grad(), layer_hooks(modules, layer_names, stop_when_full=True) as store:
        store.pool = rep.pool_activation
        for batch in rep.batches(data, batch_size):
            _reset(store, batch)
            try:
                rep.forward(model, batch)
            except _ForwardDone:
                pass
            for i, out in enumerate(store.outputs):
                if out is None:
                    raise ValueError(f"layer {layer_names[i]!r} did not run in the model's forward pass")
                chunks[i].append(out)
    return [torch.cat(c) for c in chunks]


def target_gradients(
    model: nn.Module,
    modules: Sequence[nn.Module],
    data: Any,
    rep: Representation,
    target: int,
    *,
    batch_size: int,
    layer_names: Sequence[str],
) -> list[torch.Tensor]:
    """Pooled gradients [N, D] (float32, on the model's device) of the target logit w.r.t. every
    layer, from a single forward+backward per batch shared by all layers."""
    chunks: list[list[torch.Tensor]] = [[] for _ in modules]
    with torch.enable_grad(), layer_hooks(modules, layer_names, replace_with_clone=True) as store:
        for batch in rep.batches(data, batch_size):
            _reset(store, batch)
            logits = rep.forward(model, batch)
            if not 0 <= target < logits.shape[1]:
                raise ValueError(f"target {target} is out of range for a model with {logits.shape[1]} outputs")
            acts = list(store.outputs)
            for name, act in zip(layer_names, acts):
                if act is None:
                    raise ValueError(f"layer {name!r} did not run in the model's forward pass")
            # samples are independent in eval mode, so the gradient of the summed logit is per-sample
            grads = torch.autograd.grad(logits[:, target].sum(), acts, allow_unused=True)
            for i, (name, g) in enumerate(zip(layer_names, grads)):
                if g is None:
                    raise ValueError(f"the target logit does not depend on layer {name!r}")
                chunks[i].append(rep.pool_gradient(g.detach(), batch).float())
    return [torch.cat(c) for c in chunks]
