"""Gradient methods on the word-embedding layer: Integrated Gradients and Gradient x Input.

Integrated Gradients: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from audit.text._encoding import EncodedText, PaddedBatch
from audit.text._model import Output, forward_logits, target_output

IGMethod = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
Baseline = Literal["pad", "mask", "zero"]
IG_METHODS: tuple[str, ...] = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES: tuple[str, ...] = ("pad", "mask", "zero")


@dataclass
class EmbeddingAttribution:
    """Token scores [B, T] (padding is exactly zero) and, for IG, the completeness gap per text."""

    scores: torch.Tensor
    delta: torch.Tensor | None = None


def path_nodes(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Points alpha in [0, 1] on the straight path and their quadrature weights (float64)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"ig_steps must be a positive integer, got {steps!r}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy((x + 1.0) / 2.0), torch.from_numpy(w / 2.0)
    if method not in IG_METHODS:
        raise ValueError(f"ig_method must be one of {IG_METHODS}, got {method!r}")
    n = steps
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("riemann_trapezoid needs ig_steps >= 2")
        alphas = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[0] /= 2
        weights[-1] /= 2
        return alphas, weights
    k = torch.arange(n, dtype=torch.float64)
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return (k + offset) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)


def baseline_embeddings(
    embedding: nn.Module,
    batch: PaddedBatch,
    encoded: list[EncodedText],
    *,
    baseline: str | int,
    pad_id: int,
    mask_id: int | None,
) -> torch.Tensor:
    """Baseline word embeddings [B, T, D]: special tokens and padding keep the input's embedding."""
    keep = _kept_positions(batch, encoded)
    with torch.no_grad():
        x_emb = embedding(batch.input_ids)
        if baseline == "zero":
            return torch.where(keep.unsqueeze(-1), x_emb, torch.zeros_like(x_emb))
        if isinstance(baseline, int) and not isinstance(baseline, bool):
            fill = baseline
        elif baseline == "pad":
            fill = pad_id
        elif baseline == "mask":
            if mask_id is None:
                raise ValueError("ig_baseline='mask' needs a tokenizer with a mask token; use 'pad' or 'zero'")
            fill = mask_id
        else:
            raise ValueError(f"ig_baseline must be one of {BASELINES} or a token id, got {baseline!r}")
        ids = torch.where(keep, batch.input_ids, torch.full_like(batch.input_ids, fill))
        return embedding(ids)


def _kept_positions(batch: PaddedBatch, encoded: list[EncodedText]) -> torch.Tensor:
    """True where the baseline equals the input: special tokens and padding."""
    keep = batch.attention_mask == 0
    for i, e in enumerate(encoded):
        keep[i, : len(e)] = torch.as_tensor(e.special, device=keep.device)
    return keep


def integrated_gradients(
    model: nn.Module,
    embedding: nn.Module,
    batch: PaddedBatch,
    encoded: list[EncodedText],
    targets: torch.Tensor,
    *,
    steps: int,
    method: str,
    baseline: str | int,
    pad_id: int,
    mask_id: int | None,
    internal_batch_size: int,
    output: Output,
) -> EmbeddingAttribution:
    """IG over the word-embedding output, summed over the embedding dimension.

    The path is interpolated in embedding space and fed through `inputs_embeds`, so no hook is
    needed; position and token-type embeddings are added by the model on top, as for the input.
    """
    alphas, weights = path_nodes(steps, method)
    with torch.no_grad():
        x_emb = embedding(batch.input_ids)
    b_emb = baseline_embeddings(embedding, batch, encoded, baseline=baseline, pad_id=pad_id, mask_id=mask_id)
    diff = x_emb - b_emb
    bsz = x_emb.shape[0]
    per_pass = max(1, internal_batch_size // bsz)  # path points evaluated in one forward
    grad_sum = torch.zeros_like(x_emb)
    alphas = alphas.to(x_emb.device, x_emb.dtype)
    weights = weights.to(x_emb.device, x_emb.dtype)
    for start in range(0, len(alphas), per_pass):
        a = alphas[start : start + per_pass]
        w = weights[start : start + per_pass]
        k = len(a)
        path = (b_emb.unsqueeze(0) + a.view(k, 1, 1, 1) * diff.unsqueeze(0)).reshape(k * bsz, *x_emb.shape[1:])
        path.requires_grad_(True)
        logits, _ = forward_logits(
            model,
            inputs_embeds=path,
            attention_mask=batch.attention_mask.repeat(k, 1),
            token_type_ids=None if batch.token_type_ids is None else batch.token_type_ids.repeat(k, 1),
        )
        value = target_output(logits, targets.repeat(k), output)
        (grad,) = torch.autograd.grad(value.sum(), path)
        grad_sum += (grad.view(k, *x_emb.shape) * w.view(k, 1, 1, 1)).sum(0)
    scores = (diff * grad_sum).sum(-1).detach()
    with torch.no_grad():
        ends = torch.cat([x_emb, b_emb])
        logits, _ = forward_logits(
            model,
            inputs_embeds=ends,
            attention_mask=batch.attention_mask.repeat(2, 1),
            token_type_ids=None if batch.token_type_ids is None else batch.token_type_ids.repeat(2, 1),
        )
        f = target_output(logits, targets.repeat(2), output)
    delta = scores.sum(-1) - (f[:bsz] - f[bsz:])
    return EmbeddingAttribution(scores=scores, delta=delta)


def grad_x_input(
    model: nn.Module,
    embedding: nn.Module,
    batch: PaddedBatch,
    targets: torch.Tensor,
    *,
    output: Output,
) -> EmbeddingAttribution:
    """Gradient of the target output times the word embedding, summed over the embedding dimension."""
    with torch.no_grad():
        x_emb = embedding(batch.input_ids)
    x_emb.requires_grad_(True)
    logits, _ = forward_logits(
        model, inputs_embeds=x_emb, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids
    )
    (grad,) = torch.autograd.grad(target_output(logits, targets, output).sum(), x_emb)
    scores = (grad * x_emb).sum(-1).detach()
    return EmbeddingAttribution(scores=scores * batch.attention_mask.to(scores.dtype))
