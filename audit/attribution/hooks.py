"""Scoped hook bundles: every hook the engine registers lives inside one ``with`` block.

Leaving the block removes all of them, also when the model raises mid-forward, so a model handed
to the engine never keeps a hook from it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class HookBundle:
    """Collects hook handles and removes them all on exit (never swallowing the exception)."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        self._handles.append(module.register_forward_hook(fn))

    def forward_pre(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        self._handles.append(module.register_forward_pre_hook(fn))

    def add(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> "HookBundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class LayerCapture:
    """What a capture hook saw during the last forward: the layer output (in the graph) and a copy."""

    output: torch.Tensor | None = None
    calls: int = 0


@contextmanager
def capture_layer(module: nn.Module) -> Iterator[LayerCapture]:
    """Record ``module``'s output tensor; downstream code receives a clone.

    Handing downstream a clone keeps the recorded tensor intact when the next operation works in
    place (``ReLU(inplace=True)``), and gradients taken with respect to the recorded tensor are
    exactly the gradients of the layer output.
    """
    record = LayerCapture()

    def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
        # A block that returns a tuple (older Hugging Face ViTLayer: (hidden_states, ...)) is read
        # through its first element, the token tensor.
        rest: tuple[Any, ...] | None = None
        if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
            out, rest = out[0], tuple(out[1:])
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the attribution layer must output a single tensor, got {type(out).__name__}; "
                "choose a sub-module that returns a tensor"
            )
        record.calls += 1
        record.output = out
        return out.clone() if rest is None else (out.clone(), *rest)

    with HookBundle() as bundle:
        bundle.forward(module, hook)
        yield record


@dataclass
class IOCapture:
    """Inputs and outputs seen by a set of modules during one forward."""

    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)


@contextmanager
def capture_io(modules: dict[str, nn.Module]) -> Iterator[IOCapture]:
    """Record (first input, output) of each named module, for structural discovery."""
    record = IOCapture()

    def make(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, inp: Any, out: Any) -> None:
            if inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
                record.seen.setdefault(name, []).append((inp[0], out))

        return hook

    with HookBundle() as bundle:
        for name, mod in modules.items():
            bundle.forward(mod, make(name))
        yield record


def live_hook_count(model: nn.Module) -> int:
    """Number of hooks of any kind attached to ``model`` or its sub-modules (for leak checks)."""
    total = 0
    for mod in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            total += len(getattr(mod, attr, {}) or {})
    return total
