"""Finding the layer a layer-based method reads, and turning its output into a spatial grid.

No hand configuration: the default is the last ``Conv2d``; for a torchvision VisionTransformer it
is the last encoder block (its pre-attention LayerNorm), whose tokens are reshaped to a patch grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NO_CONV = (
    "no Conv2d layer found in {model}; pass layer= (a module or dotted name such as 'layer4') "
    "whose output is [B, C, h, w] or transformer tokens [B, T, D]"
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


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> ResolvedLayer:
    """Turn ``layer`` (module, dotted name or None) into a (name, module) pair inside ``model``."""
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
    if is_torchvision_vit(model):
        # Tokens after the last block reach the head only through the class token, so patch
        # tokens there get no gradient; the last block's input norm still mixes them by attention.
        idx = len(model.encoder.layers) - 1
        block = model.encoder.layers[idx]
        target = getattr(block, "ln_1", block)
        suffix = ".ln_1" if target is not block else ""
        return ResolvedLayer(f"encoder.layers.{_child_name(model.encoder.layers, idx)}{suffix}", target)
    last: ResolvedLayer | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            last = ResolvedLayer(name, mod)
    if last is None:
        raise ValueError(NO_CONV.format(model=type(model).__name__))
    return last


def _child_name(seq: nn.Sequential, idx: int) -> str:
    return list(seq._modules.keys())[idx]


def to_spatial(act: torch.Tensor, name: str = "layer") -> torch.Tensor:
    """Return ``act`` as [B, C, h, w]: feature maps pass through; tokens [B, T, D] become a grid.

    With T = 1 + n*n the first (class) token is dropped; with T = n*n all tokens are kept.
    """
    if act.ndim == 4:
        return act
    if act.ndim == 3:
        b, t, d = act.shape
        side = math.isqrt(t - 1) if t > 1 else 0
        if t > 1 and side * side == t - 1:
            tokens = act[:, 1:, :]
        else:
            side = math.isqrt(t)
            if side * side != t:
                raise ValueError(NOT_SPATIAL.format(name=name, shape=tuple(act.shape)))
            tokens = act
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
