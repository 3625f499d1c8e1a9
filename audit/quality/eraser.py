"""ERASER faithfulness of token attributions (DeYoung et al. 2020): comprehensiveness and sufficiency,
each averaged over top-k% bins (AOPC), computed by deleting tokens from the input ids.

Comprehensiveness: p(target | text) - p(target | text without its top-k% tokens); higher is better.
Sufficiency: p(target | text) - p(target | only its top-k% tokens); lower is better. Special tokens
([CLS], [SEP]) always stay; the rest keep their order. Both are declared text quality metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Protocol, Sequence

import torch
from torch import nn

from .base import QualityMetric, Scores

ERASER_BINS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
BAD_BINS = "bins must be fractions in (0, 1], e.g. (0.01, 0.05, 0.1, 0.2, 0.5)"
NO_SCORES = "the attribution of text {i} has no scores for {method!r}; compute that method first"
DEYOUNG = ("DeYoung, Jain, Rajani, Lehman, Xiong, Socher & Wallace (2020). ERASER: A Benchmark to Evaluate "
           "Rationalized NLP Models. ACL.")


class TokenScores(Protocol):
    """What ERASER reads of a text's attribution (``audit.text.TokenAttribution`` has it)."""

    token_ids: Sequence[int]
    special: Sequence[bool]
    target: int
    scores: Mapping[str, torch.Tensor]


class _EraserMetric(QualityMetric):
    """``inputs``: the texts' token attributions (ids and special-token flags); ``maps``: one 1-D score tensor
    per text; ``targets``: the class each map explains (None: each attribution's own). One value per text:
    its mean over the bins."""

    paper = DEYOUNG
    category = "faithfulness"
    modalities = ("text",)
    value_range = (-1.0, 1.0)
    settings = {"pad_id": 0, "bins": ERASER_BINS}

    def compute(self, model: nn.Module, inputs: Sequence[TokenScores], targets: Sequence[int] | None,
                maps: Sequence[torch.Tensor], **data: Any) -> Scores:
        texts = [SimpleNamespace(token_ids=a.token_ids, special=a.special, scores={"map": m},
                                 target=a.target if targets is None else int(targets[i]))
                 for i, (a, m) in enumerate(zip(inputs, maps, strict=True))]
        per_text = [getattr(eraser_scores(model, [t], ["map"], **self.config)["map"], self.name) for t in texts]
        return Scores(torch.tensor(per_text, dtype=torch.float64), type(self))


class Comprehensiveness(_EraserMetric):
    name = "comprehensiveness"
    listing = 40
    label = "Comprehensiveness"
    direction = "higher"
    description = ("drop in the explained class's probability when the map's top tokens are deleted: the map "
                   "found what the model uses")


class Sufficiency(_EraserMetric):
    name = "sufficiency"
    listing = 50
    label = "Sufficiency"
    direction = "lower"
    description = "drop in the explained class's probability when only the map's top tokens are kept: they suffice"


ERASER_METRICS: tuple[str, ...] = (Comprehensiveness.name, Sufficiency.name)  # the fields of EraserScores


@dataclass
class EraserScores:
    """AOPC comprehensiveness and sufficiency of one method, averaged over texts, with the per-bin means."""

    method: str
    comprehensiveness: float
    sufficiency: float
    texts: int
    per_bin: dict[float, tuple[float, float]] = field(default_factory=dict)  # bin -> (comp, suff)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "comprehensiveness": self.comprehensiveness, "sufficiency": self.sufficiency,
                "texts": self.texts, "per_bin": {str(k): list(v) for k, v in self.per_bin.items()}}


def _variants(a: TokenScores, scores: torch.Tensor, bins: Sequence[float]) -> list[list[int]]:
    """For each bin: the ids without the top tokens, then the ids with only them (and the special tokens)."""
    content = [i for i, s in enumerate(a.special) if not s]
    order = sorted(content, key=lambda i: (-float(scores[i]), i))
    out = []
    for k in bins:
        top = set(order[:max(1, math.ceil(k * len(content)))]) if content else set()
        out.append([t for i, t in enumerate(a.token_ids) if i not in top])
        out.append([t for i, t in enumerate(a.token_ids) if i in top or a.special[i]])
    return out


@torch.no_grad()
def _probabilities(model: nn.Module, seqs: list[list[int]], target: int, pad_id: int, device: torch.device) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, :len(s)] = 1
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
    logits = out.logits if hasattr(out, "logits") else out
    return torch.softmax(logits.float(), dim=-1)[:, target].cpu()


def eraser_scores(model: nn.Module, attributions: Sequence[TokenScores], methods: Sequence[str], *,
                  pad_id: int = 0, bins: Sequence[float] = ERASER_BINS) -> dict[str, EraserScores]:
    """Comprehensiveness and sufficiency (AOPC over ``bins``) of each method's token scores.

    Tokens are ranked by their signed score (evidence for the explained target first). Each text's target is
    the one its attribution explains; probabilities come from one batched forward per text.
    """
    if not bins or any(not (0 < float(b) <= 1) for b in bins):
        raise ValueError(f"{BAD_BINS}, got {bins!r}")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        comp = {m: torch.zeros(len(bins)) for m in methods}
        suff = {m: torch.zeros(len(bins)) for m in methods}
        for i, a in enumerate(attributions):
            missing = [m for m in methods if m not in a.scores]
            if missing:
                raise ValueError(NO_SCORES.format(i=i, method=missing[0]))
            # One forward per text: the text itself, then each method's 2 x len(bins) variants.
            seqs = [list(a.token_ids)] + [v for m in methods for v in _variants(a, a.scores[m], bins)]
            p = _probabilities(model, seqs, int(a.target), pad_id, device)
            for j, m in enumerate(methods):
                own = p[1 + 2 * len(bins) * j: 1 + 2 * len(bins) * (j + 1)]
                comp[m] += p[0] - own[0::2]
                suff[m] += p[0] - own[1::2]
        n = max(1, len(attributions))
        out: dict[str, EraserScores] = {}
        for m in methods:
            c, s_ = comp[m] / n, suff[m] / n
            out[m] = EraserScores(m, float(c.mean()), float(s_.mean()), len(attributions),
                                  {float(b): (float(cb), float(sb)) for b, cb, sb in zip(bins, c, s_)})
        return out
    finally:
        model.train(was_training)
