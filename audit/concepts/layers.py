"""Which layers a concept test probes by default on a model it has not seen: the last blocks of the model's main
stack whose class gradient changes with the input, found by structure and one gradient probe, on any architecture.

Why the probe: when everything after a layer is linear in it (global average pooling and a linear head after the
last block), the gradient of a class logit with respect to that layer is the same for every input. Every
directional derivative along a CAV then has the same sign for all inputs, the TCAV score is 0 or 1 according to
the side the CAV falls on, and the test is a coin per run. Such a layer is never chosen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import nn

from audit.concepts.capture import (
    Representation,
    TextRepresentation,
    _main_tensor,
    _reset,
    eval_mode,
    layer_hooks,
)

log = logging.getLogger(__name__)

# Gradients of two probe inputs whose difference is at most this fraction of the larger one's norm are equal: behind
# a linear tail they are equal to the last bit (each input runs the same input-independent backward pass). Such a
# layer is never chosen.
EQUAL_RTOL = 1e-5
# Layers whose gradients differ by more than this are preferred. When they differ by a fraction e, a CAV splits the
# inputs by the sign of their directional derivatives only about as often as e, so the score is close to a coin.
# Randomly initialised networks are often that close to linear on their small activations; when fewer than the
# requested number of layers clear this margin, the choice falls back to EQUAL_RTOL and says so in the log.
GRADIENT_RTOL = 1e-2
MAX_PROBE_CLASSES = 3

ERR_PROBE_INPUTS = "the layer probe needs at least 2 different inputs (a batch [N >= 2, ...] or N >= 2 texts)"
ERR_NO_LAYER = (
    "no block of this model has a class gradient that changes with the input, so TCAV cannot tell concepts apart "
    "at any of them; name the layers to test explicitly (layers=...)"
)


@dataclass(frozen=True)
class LayerProbe:
    """The gradient probe of one candidate layer.

    ``spread``: over the probed classes, the smallest of the largest relative difference between the class
    gradients of two probe inputs (0 when some class has the same gradient for every input)."""

    name: str
    shape: tuple[int, ...]
    spread: float


@dataclass(frozen=True)
class LayerChoice:
    """Default TCAV layers and how they were found: ``stack`` is the module whose children form the main stack
    (``""`` for the model itself); ``probes`` holds every probed candidate in forward order; ``rtol`` is the
    margin the chosen layers cleared (GRADIENT_RTOL, or EQUAL_RTOL on a fallback)."""

    layers: list[str]
    stack: str
    probes: dict[str, LayerProbe]
    classes: list[int]
    rtol: float

    @property
    def excluded(self) -> list[str]:
        """Probed layers whose class gradients did not differ between inputs by more than ``rtol``."""
        return [name for name, p in self.probes.items() if p.spread <= self.rtol]


def _candidates(
    model: nn.Module, batch: Any, rep: Representation, batch_size: int
) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Modules that can carry a concept, in the order their forward ends: run exactly once, hold parameters,
    output feature maps [B, C, H, W] with more than one position or token sequences [B, T, D]. A classifier head
    (2-D output, or a map pooled to one position) never qualifies."""
    names = {m: name for name, m in model.named_modules() if name}
    calls: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def hook(m: nn.Module, _args: object, output: object) -> None:
        name = names[m]
        calls[name] = calls.get(name, 0) + 1
        if calls[name] == 1:
            order.append(name)
            try:
                shapes[name] = tuple(_main_tensor(output).shape)
            except TypeError:  # a model-output object or no tensor: not a block
                pass

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            rep.forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    has_params = {name for name, m in model.named_modules() if name and any(True for _ in m.parameters())}
    out = []
    for name in order:
        shape = shapes.get(name, ())
        spatial = len(shape) == 4 and shape[2] * shape[3] > 1
        if calls[name] == 1 and name in has_params and (spatial or len(shape) == 3) and shape[0] == batch_size:
            out.append(name)
    return out, {n: shapes[n][1:] for n in out}


def _children(candidates: Sequence[str], parent: str) -> list[str]:
    """The candidates that are direct children of ``parent`` ("" is the model), in forward order."""
    depth = parent.count(".") + 1 if parent else 0
    prefix = f"{parent}." if parent else ""
    return [c for c in candidates if c.startswith(prefix) and c.count(".") == depth]


def _main_stack(candidates: Sequence[str]) -> tuple[str, list[str]]:
    """The main stack: among the modules whose candidate children hold at least half of all candidates (counting
    the ones nested in them), the one with the most candidate children (the outermost on a tie), and those
    children in forward order. The model itself for a ResNet, ``features`` for MobileNet, EfficientNet, ConvNeXt,
    SqueezeNet or DenseNet, the encoder's block list for a transformer. The share keeps the layers inside one
    residual block or one stage, or the several tables of a text model's embeddings, from passing for the stack."""
    weight = {c: 1 + sum(1 for d in candidates if d.startswith(f"{c}.")) for c in candidates}
    total = len(candidates)
    parents = {""} | {c.rsplit(".", 1)[0] for c in candidates if "." in c}
    best: tuple[str, list[str]] = ("", [])
    for parent in sorted(parents, key=lambda p: (p.count(".") if p else -1, p)):
        kids = _children(candidates, parent)
        if 2 * sum(weight[k] for k in kids) >= total and len(kids) > len(best[1]):
            best = (parent, kids)
    return best


def _gradient_probe(
    model: nn.Module, batches: Sequence[Any], rep: Representation, layers: Sequence[str], classes: Sequence[int],
) -> dict[str, float]:
    """The spread of each layer (see LayerProbe). One forward per probe input (a batch of one, so a model exported for a fixed
    batch size runs too) and one backward per probed class, all layers at once."""
    modules = [model.get_submodule(n) for n in layers]
    grads: dict[tuple[str, int], list[Optional[torch.Tensor]]] = {(n, c): [] for n in layers for c in classes}
    with torch.enable_grad(), layer_hooks(modules, layers, replace_with_clone=True) as store:
        for batch in batches:
            _reset(store, batch)
            logits = rep.forward(model, batch)
            acts = list(store.outputs)
            for k, c in enumerate(classes):
                per_layer = torch.autograd.grad(logits[:, c].sum(), acts, retain_graph=k + 1 < len(classes),
                                                allow_unused=True)
                for name, g in zip(layers, per_layer):
                    # None: the logits do not depend on this layer (a side branch), as good as a constant
                    grads[name, c].append(None if g is None else rep.pool_gradient(g.detach(), batch)[0].double())
    out = {}
    for name in layers:
        spread = float("inf")
        for c in classes:
            vectors = [torch.zeros(1, dtype=torch.float64) if g is None else g for g in grads[name, c]]
            largest = 0.0
            for i in range(len(vectors)):
                for j in range(i + 1, len(vectors)):
                    scale = max(float(vectors[i].norm()), float(vectors[j].norm()))
                    if scale > 0:
                        largest = max(largest, float((vectors[i] - vectors[j]).norm()) / scale)
            spread = min(spread, largest)
        out[name] = spread
    return out


def choose_tcav_layers(
    model: nn.Module,
    inputs: Any,
    *,
    n: int = 2,
    tokenizer: Any = None,
    classes: Optional[Sequence[int]] = None,
    rtol: float = GRADIENT_RTOL,
) -> LayerChoice:
    """The default TCAV layers of ``model``: the last ``n`` blocks of its main stack at which a class gradient
    changes with the input.

    1. Candidates: submodules run once per forward, with parameters, whose output is a feature map or token
       sequence (one forward pass); a feature map needs more than one position.
    2. Main stack: among the modules whose candidate children hold at least half of all candidates, the one with
       the most candidate children, the outermost on a tie (no per-architecture list; the names come from the
       model).
    3. Probe: for each probed class (``classes``, default up to three spread over the logits), the gradient of its
       logit with respect to each layer's output, pooled as TCAV pools it, on every probe input. A layer whose
       gradients are equal across the inputs is never chosen: everything after it is linear in it and its TCAV
       score would be decided by the CAV's side, not by the inputs. Layers whose gradients differ by more than
       ``rtol`` (relative) are preferred; when fewer than ``n`` blocks clear it, any that are not equal (more than
       EQUAL_RTOL) are taken, with a warning.
    4. An excluded block is replaced by its last sub-block that passes, looking one level down at a time (the
       last stage of a ResNet before pooling and a linear head gives way to its first residual block).

    ``inputs``: at least two different model inputs (a tensor [N, ...]; random values of the model's input
    shape serve), or at least two texts with ``tokenizer`` for a text model (its layers are read through the
    [CLS] vector, as the concept test reads them). Raises ValueError when no layer passes.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError("a TorchScript model takes no forward hooks, so no layer of it can be tested for concepts")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    text = isinstance(inputs, (list, tuple))
    if text:
        if tokenizer is None:
            raise ValueError("text probe inputs need the model's tokenizer: pass tokenizer=...")
        if len(inputs) < 2 or not all(isinstance(s, str) for s in inputs):
            raise ValueError(ERR_PROBE_INPUTS)
    elif not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or len(inputs) < 2:
        raise ValueError(ERR_PROBE_INPUTS)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        raise ValueError("the model has no parameters, so it has no blocks to test concepts at") from None
    rep: Representation = TextRepresentation(device, tokenizer, "cls", 128) if text else Representation(device)
    if text:
        batches = [next(iter(rep.batches([sentence], 1))) for sentence in inputs]
    else:
        # a graph from the input on, so the probe reaches every layer even when the weights are frozen
        batches = [inputs[i : i + 1].detach().to(device).clone().requires_grad_(True) for i in range(len(inputs))]

    with eval_mode(model):
        candidates, shapes = _candidates(model, batches[0], rep, 1)
        if not candidates:
            raise ValueError(ERR_NO_LAYER)
        with torch.no_grad():
            n_classes = rep.forward(model, batches[0]).shape[1]
        if classes is None:
            classes = sorted({0, n_classes // 2, n_classes - 1})[:MAX_PROBE_CLASSES]
        classes = [int(c) for c in classes]
        if not classes or not all(0 <= c < n_classes for c in classes):
            raise ValueError(f"classes must be class indices of a model with {n_classes} outputs, got {classes}")
        stack, blocks = _main_stack(candidates)
        spreads = _gradient_probe(model, batches, rep, candidates, classes)

    def choose(margin: float) -> list[str]:
        def refine(name: str) -> Optional[str]:
            if spreads[name] > margin:
                return name
            kids = _children(candidates, name)
            passing = [k for k in kids if spreads[k] > margin]
            if passing:
                return passing[-1]
            return refine(kids[-1]) if kids else None

        chosen: list[str] = []
        for block in blocks:
            name = refine(block)
            if name is not None and name not in chosen:
                chosen.append(name)
        return chosen[-n:]

    margin = rtol
    chosen = choose(margin)
    if len(chosen) < n and rtol > EQUAL_RTOL:
        fallback = choose(EQUAL_RTOL)
        if len(fallback) > len(chosen):
            log.warning("only %d block(s) have class gradients that differ between inputs by more than %.0e; "
                        "taking %s, whose gradients differ less (TCAV scores there are close to a coin)",
                        len(chosen), rtol, fallback)
            margin, chosen = EQUAL_RTOL, fallback
    if not chosen:
        raise ValueError(ERR_NO_LAYER)
    probes = {c: LayerProbe(name=c, shape=shapes[c], spread=spreads[c]) for c in candidates}
    return LayerChoice(layers=chosen, stack=stack, probes=probes, classes=list(classes), rtol=margin)
