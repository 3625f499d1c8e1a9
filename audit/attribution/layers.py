"""Finding the layer a layer-based method reads, and turning its output into a spatial grid.

No hand configuration: the default is the output of the last convolutional block (the final feature
map before global pooling); for a vision transformer (torchvision or Hugging Face ViT/DeiT), the last
block's pre-attention LayerNorm.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .hooks import HookBundle

NO_CONV = (
    "no convolutional feature map found in {model}; pass layer= (a module or dotted name such as 'layer4') "
    "whose output is [B, C, h, w] or transformer tokens [B, T, D]"
)
NO_HOOKS = (
    "{model} is a TorchScript module, which takes no forward hooks, so its feature maps cannot be "
    "found or read; explain the eager model (load its weights into the architecture) instead"
)
NOT_SPATIAL = (
    "layer {name!r} outputs shape {shape}, which is not spatial; pick a layer that outputs "
    "[B, C, h, w] feature maps or [B, T, D] tokens whose count is a square (plus a class token)"
)


@dataclass(frozen=True)
class ResolvedLayer:
    name: str
    module: nn.Module


def is_torchvision_vit(model: nn.Module) -> bool:
    """True for torchvision's VisionTransformer (or a module with its structure)."""
    encoder = getattr(model, "encoder", None)
    return (
        hasattr(model, "class_token")
        and hasattr(model, "patch_size")
        and encoder is not None
        and isinstance(getattr(encoder, "layers", None), nn.Sequential)
    )


def hf_vit_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """(dotted name, blocks) of a Hugging Face ViT-style encoder inside ``model``, or None.

    The blocks are the last module list whose blocks have ``layernorm_before`` (ViT, DeiT, BEiT:
    ``vit.encoder.layer`` in transformers 4, ``vit.layers`` in transformers 5; Swin: its last stage).
    """
    found = None
    for name, mod in model.named_modules():
        if (
            isinstance(mod, nn.ModuleList)
            and len(mod) > 0
            and isinstance(getattr(mod[-1], "layernorm_before", None), nn.Module)
        ):
            found = (name, mod)
    return found


def is_vision_transformer(model: nn.Module) -> bool:
    """A torchvision ViT or a model holding a Hugging Face ViT-style encoder (token layers, no conv maps)."""
    return is_torchvision_vit(model) or hf_vit_blocks(model) is not None


def resolve_layer(
    model: nn.Module, layer: nn.Module | str | None, *, sample: torch.Tensor | None = None
) -> ResolvedLayer:
    """Turn ``layer`` (module, dotted name or None) into a (name, module) pair inside ``model``.

    None picks the default (see :func:`default_layer`); ``sample`` [1, C, H, W] is the input its
    probe forward uses (without one, a zero image sized from the first convolution).
    """
    if isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError as exc:
            names = [n for n, _ in model.named_modules() if n][-8:]
            raise ValueError(
                f"layer {layer!r} is not a sub-module of {type(model).__name__}; "
                f"some valid names: {', '.join(names)}"
            ) from exc
        return ResolvedLayer(layer, module)
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return ResolvedLayer(name, mod)
        raise ValueError(f"the given layer ({type(layer).__name__}) is not part of the model")
    if layer is not None:
        raise TypeError(f"layer must be a module, a dotted name or None, got {type(layer).__name__}")
    return default_layer(model, sample)


def vit_default_layer(model: nn.Module) -> ResolvedLayer:
    # Tokens after the last block reach the head only through the class token, so patch tokens
    # there get no gradient; the last block's input norm still mixes them by attention.
    idx = len(model.encoder.layers) - 1
    block = model.encoder.layers[idx]
    target = getattr(block, "ln_1", block)
    suffix = ".ln_1" if target is not block else ""
    return ResolvedLayer(f"encoder.layers.{_child_name(model.encoder.layers, idx)}{suffix}", target)


def hf_vit_default_layer(model: nn.Module) -> ResolvedLayer:
    # The same reasoning as for torchvision: the last block's input norm, tokens [B, 1+N, D].
    found = hf_vit_blocks(model)
    if found is None:
        raise ValueError(NO_CONV.format(model=type(model).__name__))
    prefix, blocks = found
    idx = len(blocks) - 1
    return ResolvedLayer(f"{prefix}.{idx}.layernorm_before", blocks[idx].layernorm_before)


def default_layer(model: nn.Module, sample: torch.Tensor | None = None) -> ResolvedLayer:
    """The layer CAM-family methods read when none is given.

    CNNs: the output of the last convolutional block, i.e. the last sub-module (in the order the
    forward completes them, pooling layers skipped) whose output is a spatial 4-D feature map;
    where several modules return that same map, the outermost (ResNets: ``layer4``, after the
    residual add, not its last conv; VGG, DenseNet, EfficientNet, MobileNet, ConvNeXt:
    ``features``). Found with one probe forward of ``sample`` under no_grad.
    torchvision ViTs: the last encoder block's input norm (see :func:`vit_default_layer`); Hugging
    Face ViT-style encoders likewise (``...layers.<last>.layernorm_before``).
    """
    if is_torchvision_vit(model):
        return vit_default_layer(model)
    if hf_vit_blocks(model) is not None:
        return hf_vit_default_layer(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(NO_HOOKS.format(model=type(model).__name__))
    probe = sample if sample is not None else probe_input(model)
    with trace_feature_maps(model) as trace, torch.no_grad():
        model(probe)
    found = trace.final()
    if found is None:
        raise ValueError(NO_CONV.format(model=type(model).__name__))
    return found.layer


def probe_input(model: nn.Module, size: int = 224) -> torch.Tensor:
    """A zero image [1, C, size, size], C from the first Conv2d, on the model's device."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError(NO_CONV.format(model=type(model).__name__))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(1, first.in_channels, size, size, device=device)


# Pooling reduces a feature map rather than computing one: "before pooling" skips these (VGG's
# adaptive 7x7 pool, a trailing max-pool), while a block that ends in one still counts.
POOLING = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)


# A torch.export program unflattened into modules keeps each leaf as a small graph of aten operators,
# not as the nn class it came from: these recognise convolutions and pooling by the operators they call.
CONV_OPS = ("aten.conv2d.", "aten.convolution.", "aten._convolution.")
POOLING_OPS = ("aten.max_pool2d", "aten.avg_pool2d", "aten.adaptive_avg_pool2d", "aten.adaptive_max_pool2d",
               "aten._adaptive_avg_pool2d", "aten.lp_pool2d")


def graph_leaf_calls(module: nn.Module, ops: tuple[str, ...]) -> bool:
    """Whether ``module`` is a graph-backed leaf (no sub-modules) that calls one of ``ops``."""
    graph = getattr(module, "graph", None)
    if not isinstance(graph, torch.fx.Graph) or any(True for _ in module.children()):
        return False
    return any(n.op == "call_function" and str(n.target).startswith(ops) for n in graph.nodes)


def is_pooling(module: nn.Module) -> bool:
    return isinstance(module, POOLING) or graph_leaf_calls(module, POOLING_OPS)


def conv_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every 2-D convolution: ``nn.Conv2d``, or a graph leaf that calls one."""
    return [(n, m) for n, m in model.named_modules()
            if n and (isinstance(m, nn.Conv2d) or graph_leaf_calls(m, CONV_OPS))]


@dataclass
class TracedMap:
    layer: ResolvedLayer
    output: torch.Tensor | None = None  # kept only when tracing with keep=True
    version: int = 0  # the tensor's version counter when recorded (detects later in-place edits)

    @property
    def intact(self) -> bool:
        return self.output is not None and self.output._version == self.version


@dataclass
class FeatureMapTrace:
    """The last module outputs seen that were spatial 4-D maps (h*w > 1), and 4-D at all."""

    last_spatial: TracedMap | None = None
    last_any: TracedMap | None = None

    def final(self) -> TracedMap | None:
        # A [B, C, 1, 1] output after larger maps is the global pooling (or a head on it).
        return self.last_spatial or self.last_any


@contextmanager
def trace_feature_maps(model: nn.Module, *, keep: bool = False) -> Iterator[FeatureMapTrace]:
    """Forward hooks on every sub-module noting which ones output 4-D maps, in completion order.

    With ``keep`` the last such output stays referenced (in the autograd graph), so the shared
    pass can find the default layer and read it in the same forward.
    """
    trace = FeatureMapTrace()

    def make(name: str, module: nn.Module) -> Callable[..., None]:
        pooling = is_pooling(module)

        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and not pooling:
                rec = TracedMap(ResolvedLayer(name, module), out if keep else None, out._version)
                trace.last_any = rec
                if out.shape[-1] * out.shape[-2] > 1:
                    trace.last_spatial = rec

        return hook

    with HookBundle() as bundle:
        for name, module in model.named_modules():
            if name:
                bundle.forward(module, make(name, module))
        yield trace


def _child_name(seq: nn.Sequential, idx: int) -> str:
    return list(seq._modules.keys())[idx]


def to_spatial(act: torch.Tensor, name: str = "layer") -> torch.Tensor:
    """Return ``act`` as [B, C, h, w]: feature maps pass through; tokens [B, T, D] become a grid.

    With T = 1 + n*n the first (class) token is dropped; with T = n*n all tokens are kept; with
    T = 2 + n*n (DeiT: class and distillation tokens) the first two are dropped.
    """
    if act.ndim == 4:
        return act
    if act.ndim == 3:
        b, t, d = act.shape
        for extra in (1, 0, 2):
            side = math.isqrt(max(t - extra, 0))
            if t - extra > 0 and side * side == t - extra:
                break
        else:
            raise ValueError(NOT_SPATIAL.format(name=name, shape=tuple(act.shape)))
        tokens = act[:, extra:, :]
        return tokens.transpose(1, 2).reshape(b, d, side, side)
    raise ValueError(NOT_SPATIAL.format(name=name, shape=tuple(act.shape)))


def global_pool_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that can be a global average pooling (adaptive avg pools)."""
    return {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d))
    }


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: mod for name, mod in model.named_modules() if isinstance(mod, nn.Linear)}


def parameterised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration (roughly input-to-output) order."""
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if name and any(True for _ in mod.parameters(recurse=False))
    ]
