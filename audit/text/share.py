"""How much of a text model's attribution falls on a set of words (e.g. gendered terms).

Used to show that a model version relies on identity words: the share of |attribution| on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Sequence

import torch
from torch import nn

from audit.text.core import TokenAttribution, attribute_text
from audit.text.registry import TextMethod
from audit.text.identity_terms import GENDERED_TERMS, normalise_term


@dataclass
class TermAttributionShare:
    """Share of |attribution| mass on the chosen terms, over non-special tokens."""

    mean: float  # mean over texts of each text's share
    pooled: float  # mass on terms over all texts / total mass over all texts
    per_text: list[float]
    texts_with_terms: int  # texts that contain at least one of the terms
    method: str


def term_mask(result: TokenAttribution, terms: Collection[str]) -> torch.Tensor:
    """Boolean mask over the result's tokens: True for pieces of words found in `terms`."""
    wanted = {normalise_term(t) for t in terms}
    hit_words = {k for k, w in enumerate(result.words) if normalise_term(w) in wanted}
    return torch.tensor([w is not None and w in hit_words for w in result.word_ids], dtype=torch.bool)


def share_of_results(
    results: Sequence[TokenAttribution], terms: Collection[str], *, method: str = "integrated_gradients"
) -> TermAttributionShare:
    """The share computed from existing attribution results (no model calls)."""
    if not results:
        raise ValueError("need at least one attribution result to compute a share")
    per_text: list[float] = []
    on_terms_total = 0.0
    total = 0.0
    with_terms = 0
    for r in results:
        if method not in r.scores:
            raise ValueError(f"result for {r.text!r} has no {method!r} scores; run attribute_text with it")
        mass = r.scores[method].abs() * ~torch.tensor(r.special, dtype=torch.bool)
        mask = term_mask(r, terms)
        on_terms = float(mass[mask].sum())
        all_mass = float(mass.sum())
        with_terms += bool(mask.any())
        per_text.append(on_terms / all_mass if all_mass > 0 else 0.0)
        on_terms_total += on_terms
        total += all_mass
    return TermAttributionShare(
        mean=sum(per_text) / len(per_text),
        pooled=on_terms_total / total if total > 0 else 0.0,
        per_text=per_text,
        texts_with_terms=with_terms,
        method=method,
    )


def term_attribution_share(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    terms: Collection[str],
    *,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method: TextMethod = "integrated_gradients",
    **options: Any,
) -> TermAttributionShare:
    """Attribute `texts` with one method and measure the |attribution| share on `terms`."""
    results = attribute_text(model, tokenizer, list(texts), targets, [method], **options)
    return share_of_results(results, terms, method=method)


def gendered_attribution_share(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method: TextMethod = "integrated_gradients",
    **options: Any,
) -> TermAttributionShare:
    """Share of |IG| (by default) on gendered words (identity_terms.GENDERED_TERMS)."""
    return term_attribution_share(model, tokenizer, texts, GENDERED_TERMS, targets=targets, method=method, **options)
