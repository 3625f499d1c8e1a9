"""Leave-one-out occlusion for text: drop (or replace) one token, or one whole word, and measure the change.

Score = f(text) - f(text with the unit left out); special tokens are never left out and score zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from audit.text._encoding import EncodedText, pad_sequences
from audit.text._model import Output, forward_logits, target_output

Replacement = Literal["remove", "mask", "pad"]
REPLACEMENTS: tuple[str, ...] = ("remove", "mask", "pad")


@dataclass
class OcclusionScores:
    tokens: list[torch.Tensor]  # per text, over its tokens
    words: list[torch.Tensor]  # per text, over its words


def _variant(e: EncodedText, drop: list[int], replacement: str, fill: int | None) -> tuple[list[int], list[int] | None]:
    if replacement == "remove":
        gone = set(drop)
        ids = [t for j, t in enumerate(e.input_ids) if j not in gone]
        types = None if e.token_type_ids is None else [t for j, t in enumerate(e.token_type_ids) if j not in gone]
        return ids, types
    ids = list(e.input_ids)
    for j in drop:
        ids[j] = int(fill)  # type: ignore[arg-type]
    return ids, e.token_type_ids


def leave_one_out(
    model: nn.Module,
    encoded: list[EncodedText],
    targets: torch.Tensor,
    reference: torch.Tensor,
    *,
    replacement: str,
    pad_id: int,
    mask_id: int | None,
    batch_size: int,
    output: Output,
    device: torch.device,
) -> OcclusionScores:
    """Token- and word-level leave-one-out, all variants of all texts run in padded batches.

    reference: the target output on the unoccluded texts, [B].
    """
    if replacement not in REPLACEMENTS:
        raise ValueError(f"occlusion_replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    fill = {"pad": pad_id, "mask": mask_id, "remove": None}[replacement]
    if replacement == "mask" and mask_id is None:
        raise ValueError("occlusion_replacement='mask' needs a tokenizer with a mask token; use 'remove' or 'pad'")
    # (text index, "token"/"word", unit index, ids, token types)
    jobs: list[tuple[int, str, int, list[int], list[int] | None]] = []
    for i, e in enumerate(encoded):
        for j, special in enumerate(e.special):
            if not special:
                jobs.append((i, "token", j, *_variant(e, [j], replacement, fill)))
        for w in range(len(e.words)):
            positions = [j for j, wid in enumerate(e.word_ids) if wid == w]
            jobs.append((i, "word", w, *_variant(e, positions, replacement, fill)))
    token_scores = [torch.zeros(len(e), dtype=reference.dtype) for e in encoded]
    word_scores = [torch.zeros(len(e.words), dtype=reference.dtype) for e in encoded]
    reference = reference.detach().cpu()
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            batch = pad_sequences([c[3] for c in chunk], [c[4] for c in chunk], pad_id=pad_id, device=device)
            idx = torch.tensor([c[0] for c in chunk], device=device)
            logits, _ = forward_logits(
                model,
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                token_type_ids=batch.token_type_ids,
            )
            values = target_output(logits, targets[idx], output).cpu()
            for (i, level, unit, _, _), v in zip(chunk, values):
                store = token_scores if level == "token" else word_scores
                store[i][unit] = reference[i] - v
    return OcclusionScores(tokens=token_scores, words=word_scores)
