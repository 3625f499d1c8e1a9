"""Attention rollout for vision transformers (Abnar & Zuidema 2020, arXiv:2005.00928).

torchvision calls its attention with need_weights=False, so the weights are recomputed from each
block's captured attention input and the module's own projection weights inside a hook scope.
Hugging Face ViT-style classifiers return them with ``output_attentions`` under eager attention
(switched on for the call and restored after).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..base import AttributionMethod, Evaluations, ExplainContext, Geometry, upsample
from ..hooks import HookBundle
from ..layers import hf_vit_blocks, is_torchvision_vit, to_spatial
from ..options import AttributionOptions

NOT_VIT = (
    "attention rollout needs a vision transformer: a torchvision VisionTransformer (model.encoder.layers "
    "of blocks with self_attention) or a Hugging Face ViT-style image classifier; got {model}"
)


def attention_weights(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Per-head attention probabilities [B, heads, T, S] of a batch-first MultiheadAttention."""
    d = mha.embed_dim
    heads = mha.num_heads
    if mha._qkv_same_embed_dim:
        w_q, w_k = mha.in_proj_weight[:d], mha.in_proj_weight[d : 2 * d]
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b_q = b_k = None
    if mha.in_proj_bias is not None:
        b_q, b_k = mha.in_proj_bias[:d], mha.in_proj_bias[d : 2 * d]
    if not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    q = F.linear(query, w_q, b_q)
    k = F.linear(key, w_k, b_k)
    bsz, t, _ = q.shape
    s = k.shape[1]
    hd = d // heads
    q = q.view(bsz, t, heads, hd).transpose(1, 2)
    k = k.view(bsz, s, heads, hd).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)


def hf_vision_model(model: nn.Module) -> nn.Module | None:
    """The outermost transformers model inside ``model`` (itself, or the child a wrapper holds) when it
    has a ViT-style encoder with global attention; None otherwise."""
    if hf_vit_blocks(model) is None:
        return None
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a project requirement
        return None
    hf = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if hf is None or getattr(hf.config, "window_size", None) is not None:
        return None  # windowed attention (Swin) has no class-token row to roll out
    return hf


def collect_hf_attentions(model: nn.Module, hf_model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Attention probabilities of every block of a Hugging Face image classifier, each [B, heads, T, T].

    Under eager attention each block's attention module returns its probabilities beside its output;
    they are read there by scoped hooks. Passing ``output_attentions`` instead would make transformers 5
    install capture hooks of its own that stay on the model.
    """
    from audit.text._model import inference_mode  # the one eager-attention switch (restored on exit)

    found = hf_vit_blocks(model)
    blocks = list(found[1]) if found is not None else []
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        items = out if isinstance(out, tuple) else (out,)
        probs = [t for t in items[1:] if isinstance(t, torch.Tensor) and t.ndim == 4]
        if probs:
            captured.append(probs[0].detach().float())

    with inference_mode(hf_model, eager_attention=True), torch.no_grad():
        with HookBundle() as bundle:
            for block in blocks:
                attention = getattr(block, "attention", None)
                if isinstance(attention, nn.Module):
                    bundle.forward(attention, hook)
            model(inputs)
        if len(captured) == len(blocks) and captured:
            return captured
        # transformers 4: the probabilities are returned only when asked for
        out = hf_model(pixel_values=inputs, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise ValueError(f"{type(hf_model).__name__} returned no attention weights")
    return [a.float() for a in attentions]


def collect_attentions(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Attention probabilities of every encoder block, layer order, each [B, heads, T, T]."""
    hf_model = hf_vision_model(model)
    if hf_model is not None:
        return collect_hf_attentions(model, hf_model, inputs)
    if not is_torchvision_vit(model):
        raise ValueError(NOT_VIT.format(model=type(model).__name__))
    captured: list[tuple[nn.MultiheadAttention, torch.Tensor, torch.Tensor]] = []

    def make(mha: nn.MultiheadAttention) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs.get("key", query)
            captured.append((mha, query.detach(), key.detach()))

        return hook

    with HookBundle() as bundle, torch.no_grad():
        for block in model.encoder.layers:
            mha = getattr(block, "self_attention", None)
            if not isinstance(mha, nn.MultiheadAttention):
                raise ValueError(NOT_VIT.format(model=type(model).__name__))
            bundle.add(mha.register_forward_pre_hook(make(mha), with_kwargs=True))
        model(inputs)
        return [attention_weights(m, q, k).float() for m, q, k in captured]


def rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Heads averaged, identity added, rows renormalised, multiplied over layers: [B, T, T]."""
    result: torch.Tensor | None = None
    for att in attentions:
        a = att.mean(dim=1)
        a = a + torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("the model has no attention blocks")
    return result


def attention_rollout(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Class-token rollout over the patches, as maps [B, H, W] upsampled to the input size."""
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be [B, C, H, W], got shape {tuple(inputs.shape)}")
    roll = rollout(collect_attentions(model, inputs))
    cls_row = roll[:, 0:1, :]  # [B, 1, T]: how much the class token draws on each token
    grid = to_spatial(cls_row.transpose(1, 2), "rollout")  # [B, 1, n, n], class token dropped
    return upsample(grid[:, 0], tuple(inputs.shape[-2:]))


class AttentionRollout(AttributionMethod):
    name = "attention_rollout"
    listing = 150
    label = "Attention rollout"
    paper = 'Abnar & Zuidema (2020). Quantifying Attention Flow in Transformers. ACL.'
    family = "attention"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return is_torchvision_vit(model) or hf_vision_model(model) is not None

    @classmethod
    def not_applicable_reason(cls, model: nn.Module) -> str | None:
        return None if cls.applies_to(model) else NOT_VIT.format(model=type(model).__name__)

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        return Evaluations(forward=geometry.batch, backward=0)

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        out = attention_rollout(ctx.model, ctx.inputs)
        ctx.counter.forward_calls += 1
        ctx.counter.forward_samples += ctx.batch
        return out
