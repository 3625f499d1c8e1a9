"""Text counterfactuals: the fewest token substitutions that flip a transformers classifier's decision.

Greedy search: rank positions by |gradient x embedding| (or occlusion), try candidate tokens, keep the best.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import torch
from torch import nn

from audit.counterfactuals._common import device_of, is_flipped, margin_of

logger = logging.getLogger(__name__)

RankBy = Literal["gradient", "occlusion"]


@dataclass
class Substitution:
    """One replaced token: its position in the tokenised input (special tokens included)."""

    position: int
    old_token: str
    new_token: str


@dataclass
class TextCounterfactual:
    """Result of a text counterfactual search.

    `valid` is True when the decision on `cf_text` is flipped (to `target` when one was given).
    `changed_fraction` is n_substitutions over the editable (non-special) tokens. When no flip was
    found within `max_substitutions`, `valid` is False, `cf_text` holds the closest attempt and
    `message` says why.
    """

    text: str
    cf_text: str
    tokens: list[str]
    cf_tokens: list[str]
    original_class: int
    cf_class: int
    target: int | None
    valid: bool
    n_substitutions: int
    changed_fraction: float
    substitutions: list[Substitution]
    original_prob: float
    cf_prob: float
    margin: float
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        out = asdict(self)
        for key in ("changed_fraction", "original_prob", "cf_prob", "margin"):
            value = out[key]
            out[key] = None if value is None or math.isnan(value) or math.isinf(value) else float(value)
        return out


def _logits(model: nn.Module, **inputs: torch.Tensor) -> torch.Tensor:
    out = model(**inputs)
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


class _Scorer:
    """Runs the classifier on token-id batches that share the original attention mask / segment ids."""

    def __init__(self, model: nn.Module, extras: dict[str, torch.Tensor], batch_size: int) -> None:
        self.model = model
        self.extras = extras
        self.batch_size = batch_size

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        parts = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            extras = {k: v.expand(len(chunk), -1) for k, v in self.extras.items()}
            parts.append(_logits(self.model, input_ids=chunk, **extras).float())
        return torch.cat(parts)

    def gradient_saliency(self, ids: torch.Tensor, orig: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """|d margin / d embedding . embedding| per position (first-order effect of removing the token)."""
        embed = self.model.get_input_embeddings()
        emb = embed(ids).detach().requires_grad_(True)
        logits = _logits(self.model, inputs_embeds=emb, **self.extras).float()
        margin = margin_of(logits, orig, target)
        (grad,) = torch.autograd.grad(margin.sum(), emb)
        return (grad * emb).sum(dim=-1).abs()[0].detach()


def text_counterfactual(
    model: nn.Module,
    tokenizer: Any,
    text: str,
    *,
    target: int | None = None,
    candidates: Literal["embedding"] | Sequence[str] = "embedding",
    max_substitutions: int = 3,
    n_neighbors: int = 20,
    n_positions: int = 8,
    rank_by: RankBy = "gradient",
    max_length: int = 256,
    batch_size: int = 128,
) -> TextCounterfactual:
    """Find at most `max_substitutions` token substitutions that flip the decision on `text`.

    Each greedy step ranks the editable positions (special tokens are never touched, a position is
    changed at most once) by |gradient x input embedding| or by occlusion with the mask/unknown token,
    tries every candidate at the top `n_positions` in one batched pass and keeps the substitution
    that lowers the decision margin most. Candidates are the `n_neighbors` nearest tokens to the
    current one in the model's input embedding (cosine; special tokens and word-piece/whole-word
    mismatches excluded) or a given word list (words that are one token in this vocabulary).
    After a flip, substitutions that are not needed to keep it are undone.

    Args:
        model: a transformers sequence classifier (accepts input_ids / inputs_embeds, attention_mask).
        tokenizer: its tokenizer.
        target: the class to reach; None = any class other than the current decision.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if max_substitutions < 1:
        raise ValueError(f"max_substitutions must be >= 1, got {max_substitutions}")
    if rank_by not in ("gradient", "occlusion"):
        raise ValueError(f"rank_by must be 'gradient' or 'occlusion', got {rank_by!r}")
    if n_positions < 1 or n_neighbors < 1 or batch_size < 1:
        raise ValueError("n_positions, n_neighbors and batch_size must be >= 1")
    has_embeddings = callable(getattr(model, "get_input_embeddings", None))
    if isinstance(candidates, str):
        if candidates != "embedding":
            raise ValueError(f"candidates must be 'embedding' or a list of words, got {candidates!r}")
        if not has_embeddings:
            raise TypeError("candidates='embedding' needs model.get_input_embeddings(); pass a word list instead")
    if rank_by == "gradient" and not has_embeddings:
        logger.info("model has no get_input_embeddings(): ranking positions by occlusion")
        rank_by = "occlusion"
    if model.training:
        logger.warning("the model is in training mode; call model.eval() for deterministic counterfactuals")

    dev = device_of(model)
    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length,
                    return_special_tokens_mask=True)
    ids = enc["input_ids"].to(dev)
    special = enc["special_tokens_mask"][0].bool().to(dev)
    extras = {k: v.to(dev) for k, v in enc.items() if k in ("attention_mask", "token_type_ids")}
    if "attention_mask" in extras:
        special |= extras["attention_mask"][0] == 0
    scorer = _Scorer(model, extras, batch_size)
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    notes: list[str] = []

    logits0 = scorer.logits(ids)
    n_classes = logits0.shape[1]
    orig = logits0.argmax(dim=1)
    if target is not None and not 0 <= int(target) < n_classes:
        raise ValueError(f"target {target} is not a class index of this model (0..{n_classes - 1})")
    tgt = torch.tensor([-1 if target is None else int(target)], device=dev)
    if target is not None and int(target) == int(orig):
        raise ValueError(f"the model already predicts the target class {target} for this text")
    editable = (~special).nonzero().flatten().tolist()
    if not editable:
        raise ValueError("the text has no editable tokens after tokenisation")

    pool = _CandidatePool(model, tokenizer, candidates, n_neighbors, dev)
    notes += pool.notes

    current = ids.clone()
    margin = float(margin_of(logits0, orig, tgt))
    subs: dict[int, int] = {}  # position -> new id
    for _ in range(max_substitutions):
        if margin < 0:
            break
        free = [p for p in editable if p not in subs]
        if not free:
            break
        positions = _rank_positions(scorer, current, free, orig, tgt, rank_by, tokenizer, n_positions)
        trial_ids, trial_pos, trial_tok = [], [], []
        for p in positions:
            for cand in pool.for_token(int(current[0, p])):
                row = current.clone()
                row[0, p] = cand
                trial_ids.append(row)
                trial_pos.append(p)
                trial_tok.append(cand)
        if not trial_ids:
            break
        batch = torch.cat(trial_ids)
        margins = margin_of(scorer.logits(batch), orig.expand(len(batch)), tgt.expand(len(batch)))
        best = int(margins.argmin())
        flips = (margins < 0).nonzero().flatten().tolist()
        if len(flips) > 1:
            # Among substitutions that already flip, the closest replacement is the most plausible.
            sims = [pool.similarity(int(current[0, trial_pos[i]]), trial_tok[i]) for i in flips]
            best = flips[max(range(len(flips)), key=lambda j: (sims[j], -float(margins[flips[j]])))]
        if float(margins[best]) >= margin:
            notes.append("no candidate substitution lowers the decision margin any further")
            break
        margin = float(margins[best])
        current = batch[best:best + 1].clone()
        subs[trial_pos[best]] = trial_tok[best]

    flipped = margin < 0
    if flipped and len(subs) > 1:
        current, subs = _undo_unneeded(scorer, ids, current, subs, orig, tgt)

    final_logits = scorer.logits(current)
    valid = bool(is_flipped(final_logits, orig, tgt)[0])
    probs0 = logits0.softmax(dim=1)[0]
    probs = final_logits.softmax(dim=1)[0]
    cf_class = int(final_logits.argmax(dim=1))
    cf_tokens = tokenizer.convert_ids_to_tokens(current[0].tolist())
    keep = (~special).nonzero().flatten().tolist()
    cf_text = tokenizer.decode([int(current[0, p]) for p in keep], skip_special_tokens=True)
    message = ""
    if not valid:
        message = (
            f"no set of at most {max_substitutions} substitution(s) from the candidates flips the "
            f"decision (closest margin {float(margin_of(final_logits, orig, tgt)):.4g}, flip needs < 0)"
        )
        notes.append(message)
    for note in notes:
        logger.info(note)
    substitutions = [Substitution(p, tokens[p], cf_tokens[p]) for p in sorted(subs)]
    return TextCounterfactual(
        text=text,
        cf_text=cf_text,
        tokens=tokens,
        cf_tokens=cf_tokens,
        original_class=int(orig),
        cf_class=cf_class,
        target=target,
        valid=valid,
        n_substitutions=len(substitutions),
        changed_fraction=len(substitutions) / len(editable),
        substitutions=substitutions,
        original_prob=float(probs0[int(orig)]),
        cf_prob=float(probs[cf_class]),
        margin=float(margin_of(final_logits, orig, tgt)),
        message=message,
        warnings=notes,
    )


def _rank_positions(
    scorer: _Scorer,
    ids: torch.Tensor,
    free: list[int],
    orig: torch.Tensor,
    tgt: torch.Tensor,
    rank_by: RankBy,
    tokenizer: Any,
    n_positions: int,
) -> list[int]:
    if len(free) <= n_positions:
        return free
    if rank_by == "gradient":
        scores = scorer.gradient_saliency(ids, orig, tgt)[free]
    else:
        filler = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        if filler is None:
            raise ValueError("occlusion ranking needs a tokenizer with a mask or unknown token")
        batch = ids.repeat(len(free), 1)
        batch[torch.arange(len(free)), torch.tensor(free)] = filler
        base = margin_of(scorer.logits(ids), orig, tgt)
        occluded = margin_of(scorer.logits(batch), orig.expand(len(free)), tgt.expand(len(free)))
        scores = base - occluded  # how much hiding the token moves towards a flip
    order = scores.argsort(descending=True)[:n_positions].tolist()
    return [free[i] for i in order]


def _undo_unneeded(
    scorer: _Scorer,
    ids: torch.Tensor,
    current: torch.Tensor,
    subs: dict[int, int],
    orig: torch.Tensor,
    tgt: torch.Tensor,
) -> tuple[torch.Tensor, dict[int, int]]:
    """Revert substitutions one at a time while the flip survives (most harmless revert first)."""
    subs = dict(subs)
    while len(subs) > 1:
        positions = list(subs)
        trials = current.repeat(len(positions), 1)
        for i, p in enumerate(positions):
            trials[i, p] = ids[0, p]
        margins = margin_of(scorer.logits(trials), orig.expand(len(trials)), tgt.expand(len(trials)))
        best = int(margins.argmin())
        if float(margins[best]) >= 0:
            break
        current = trials[best:best + 1].clone()
        del subs[positions[best]]
    return current, subs


class _CandidatePool:
    """Replacement tokens for a given token: embedding neighbours or a fixed word list."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        candidates: Literal["embedding"] | Sequence[str],
        n_neighbors: int,
        dev: torch.device,
    ) -> None:
        self.notes: list[str] = []
        self.n_neighbors = n_neighbors
        special = set(tokenizer.all_special_ids)
        if isinstance(candidates, str):
            weight = model.get_input_embeddings().weight.detach()
            size = min(weight.shape[0], len(tokenizer))
            self.unit = torch.nn.functional.normalize(weight[:size].float(), dim=1)
            vocab = tokenizer.convert_ids_to_tokens(list(range(size)))
            allowed = torch.tensor(
                [i not in special and tok is not None and not tok.startswith("[unused") for i, tok in enumerate(vocab)],
                device=self.unit.device,
            )
            self.is_piece = torch.tensor([tok is not None and tok.startswith("##") for tok in vocab],
                                         device=self.unit.device)
            self.allowed = allowed
            self.words: list[int] | None = None
        else:
            words = list(candidates)
            if not words or not all(isinstance(w, str) for w in words):
                raise ValueError("candidates must be 'embedding' or a non-empty list of words")
            ids, skipped = [], []
            for word in words:
                pieces = tokenizer.tokenize(word)
                if len(pieces) == 1:
                    tid = tokenizer.convert_tokens_to_ids(pieces[0])
                    if tid is not None and tid not in special and tid != tokenizer.unk_token_id and tid not in ids:
                        ids.append(int(tid))
                        continue
                skipped.append(word)
            if skipped:
                self.notes.append(
                    f"{len(skipped)} candidate word(s) are not single tokens of this vocabulary and were skipped: "
                    + ", ".join(repr(w) for w in skipped[:5])
                )
            if not ids:
                raise ValueError("none of the candidate words is a single token of this tokenizer's vocabulary")
            self.words = ids

    def similarity(self, a: int, b: int) -> float:
        """Cosine similarity of two tokens' input embeddings (0 for a word list without embeddings)."""
        if self.words is not None or max(a, b) >= len(self.unit):
            return 0.0
        return float(self.unit[a] @ self.unit[b])

    def for_token(self, token_id: int) -> list[int]:
        if self.words is not None:
            return [w for w in self.words if w != token_id]
        if token_id >= len(self.unit):
            return []
        sims = self.unit @ self.unit[token_id]
        usable = self.allowed & (self.is_piece == self.is_piece[token_id])
        usable[token_id] = False
        sims = torch.where(usable, sims, torch.full_like(sims, -math.inf))
        k = min(self.n_neighbors, int(usable.sum()))
        if k == 0:
            return []
        return sims.topk(k).indices.tolist()
