"""Gradient methods on the word-embedding layer: Integrated Gradients and Gradient x Input.

Integrated Gradients: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from audit.quadrature import points_and_weights
from audit.text._encoding import EncodedText, PaddedBatch
from audit.text._model import Output, forward_logits, target_output

Baseline = Literal["pad", "mask", "zero"]
BASELINES: tuple[str, ...] = get_args(Baseline)


@dataclass
class EmbeddingAttribution:
    """Token scores [B, T] (padding is exactly zero) and, for IG, the completeness gap per text."""

    scores: torch.Tensor
    delta: torch.Tensor | None = None


def path_nodes(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Points alpha in [0, 1] on the straight path and their quadrature weights (float64): the shared
    rules of audit.quadrature, aliases included."""
    return points_and_weights(method, steps)


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
    tolerance: float | None = None,
    max_steps: int = 512,
) -> EmbeddingAttribution:
    """IG over the word-embedding output, summed over the embedding dimension.

    The path is interpolated in embedding space and fed through `inputs_embeds`, so no hook is
    needed; position and token-type embeddings are added by the model on top, as for the input.
    Each text's path points are packed with those of texts of similar length (see `_packed_paths`),
    so no forward pass works on more padding than the longest text of its own pack needs.
    With `tolerance`, texts whose completeness gap exceeds it are integrated again with twice the
    steps (up to `max_steps`).
    """
    device = batch.input_ids.device
    with torch.no_grad():
        x_emb = embedding(batch.input_ids)
    b_emb = baseline_embeddings(embedding, batch, encoded, baseline=baseline, pad_id=pad_id, mask_id=mask_id)
    texts = [
        _PathText(
            x=x_emb[i, : len(e)], base=b_emb[i, : len(e)],
            types=None if batch.token_type_ids is None else batch.token_type_ids[i, : len(e)],
            target=int(targets[i]),
        )
        for i, e in enumerate(encoded)
    ]
    ends = _end_values(model, texts, internal_batch_size=internal_batch_size, output=output)
    scores = torch.zeros(batch.input_ids.shape, dtype=x_emb.dtype, device=device)
    delta = torch.zeros(len(texts), dtype=x_emb.dtype, device=device)
    todo = list(range(len(texts)))
    current = steps
    while todo:
        sums = _packed_paths(
            model, [texts[i] for i in todo], steps=current, method=method,
            internal_batch_size=internal_batch_size, output=output,
        )
        for i, s in zip(todo, sums):
            scores[i, : s.shape[0]] = s
            delta[i] = s.sum() - (ends[i, 0] - ends[i, 1])
        if tolerance is None or current >= max_steps:
            break
        todo = [i for i in todo if float(delta[i].abs()) > tolerance]
        current = min(current * 2, max_steps)
    return EmbeddingAttribution(scores=scores.detach(), delta=delta.detach())


@dataclass
class _PathText:
    """One text's ends of the straight path (word embeddings [T, D], no padding) and what it explains."""

    x: torch.Tensor
    base: torch.Tensor
    types: torch.Tensor | None
    target: int


def _forward_rows(
    model: nn.Module, blocks: list[tuple[torch.Tensor, torch.Tensor | None, int]], output: Output
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward blocks of rows of one text each, (embeddings [n, T, D], token types [T] or None, target),
    right-padded to the longest block. Returns (explained value per row [R], the padded embeddings)."""
    width = max(e.shape[1] for e, _, _ in blocks)
    device = blocks[0][0].device
    emb = torch.cat([nn.functional.pad(e, (0, 0, 0, width - e.shape[1])) for e, _, _ in blocks])
    mask = torch.cat([
        (torch.arange(width, device=device) < e.shape[1]).long().expand(e.shape[0], width) for e, _, _ in blocks
    ])
    tt = None
    if all(t is not None for _, t, _ in blocks):
        tt = torch.cat([
            nn.functional.pad(t, (0, width - t.shape[0])).expand(e.shape[0], width)  # type: ignore[arg-type]
            for e, t, _ in blocks
        ])
    targets = torch.cat([torch.full((e.shape[0],), target, dtype=torch.long, device=device) for e, _, target in blocks])
    emb.requires_grad_(torch.is_grad_enabled())
    logits, _ = forward_logits(model, inputs_embeds=emb, attention_mask=mask, token_type_ids=tt)
    return target_output(logits, targets, output), emb


def _end_values(
    model: nn.Module, texts: list[_PathText], *, internal_batch_size: int, output: Output
) -> torch.Tensor:
    """f(input) and f(baseline) per text [N, 2], packed by length like the path points."""
    order = sorted(range(len(texts)), key=lambda i: texts[i].x.shape[0])
    rows = [(i, end) for i in order for end in (0, 1)]
    out = torch.zeros(len(texts), 2, device=texts[0].x.device)
    with torch.no_grad():
        for start in range(0, len(rows), internal_batch_size):
            pack = rows[start : start + internal_batch_size]
            blocks = [
                ((texts[i].x if end == 0 else texts[i].base).unsqueeze(0), texts[i].types, texts[i].target)
                for i, end in pack
            ]
            values, _ = _forward_rows(model, blocks, output)
            for (i, end), v in zip(pack, values):
                out[i, end] = v
    return out


def _packed_paths(
    model: nn.Module, texts: list[_PathText], *, steps: int, method: str, internal_batch_size: int, output: Output
) -> list[torch.Tensor]:
    """Per text, the IG token scores [T]: (x - x') . sum_k w_k grad f(x' + a_k (x - x')).

    Work items (text, step) are laid out text by text in order of length and cut into packs of at
    most `internal_batch_size` rows of texts of similar length (`_packs`); each pack is padded only
    to its own longest text. Padding is masked
    out of attention, so a text's gradients do not depend on what it is packed with.
    """
    alphas, weights = path_nodes(steps, method)
    device = texts[0].x.device
    dtype = texts[0].x.dtype
    alphas = alphas.to(device, dtype)
    weights = weights.to(device, dtype)
    order = sorted(range(len(texts)), key=lambda i: texts[i].x.shape[0])
    grad_sum = [torch.zeros_like(t.x) for t in texts]
    for runs in _packs(order, [t.x.shape[0] for t in texts], steps, internal_batch_size):
        blocks = []
        for i, k0, k1 in runs:
            t = texts[i]
            a = alphas[k0:k1].view(-1, 1, 1)
            blocks.append((t.base.unsqueeze(0) + a * (t.x - t.base).unsqueeze(0), t.types, t.target))
        with torch.enable_grad():
            values, emb = _forward_rows(model, blocks, output)
            (grad,) = torch.autograd.grad(values.sum(), emb)
        r = 0
        for i, k0, k1 in runs:
            n = k1 - k0
            length = texts[i].x.shape[0]
            w = weights[k0:k1].view(-1, 1, 1)
            grad_sum[i] += (grad[r : r + n, :length] * w).sum(0)
            r += n
    return [((t.x - t.base) * g).sum(-1) for t, g in zip(texts, grad_sum)]


# A text of another length joins a pack only while it is at most this much longer than the pack's
# shortest text (so at most a fifth of a forward pass is padding) and while the pack is still small:
# packing pays where short texts would make small, overhead-bound passes; a pack already this many
# tokens wide gains nothing from company and would only pay for the padding.
PACK_LENGTH_RATIO = 1.25
SMALL_PACK_TOKENS = 2048


def _packs(
    order: list[int], lengths: list[int], steps: int, rows: int
) -> list[list[tuple[int, int, int]]]:
    """Cut the (text, step) items, texts in `order` (by length), into packs of at most `rows` rows of
    texts of similar length. Each pack is a list of runs (text, first step, last step + 1)."""
    packs: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    used = 0
    shortest = 0
    for i in order:
        width = lengths[current[-1][0]] if current else 0  # texts come by length: the last is the longest
        if current and lengths[i] != width and (
                lengths[i] > PACK_LENGTH_RATIO * shortest or used * lengths[i] > SMALL_PACK_TOKENS):
            packs.append(current)
            current, used = [], 0
        if not current:
            shortest = lengths[i]
        k = 0
        while k < steps:
            n = min(steps - k, rows - used)
            current.append((i, k, k + n))
            used += n
            k += n
            if used == rows:
                packs.append(current)
                current, used = [], 0
                shortest = lengths[i]
    if current:
        packs.append(current)
    return packs


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
    return EmbeddingAttribution(scores=grad_times_input(grad, x_emb, batch.attention_mask))


def grad_times_input(grad: torch.Tensor, emb: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token gradient x input [B, T], summed over the embedding dimension; padding scores 0."""
    scores = (grad * emb).sum(-1).detach()
    return scores * attention_mask.to(scores.dtype)
