"""Counterfactual fairness probe for text: swap identity terms and see whether the decision moves.

A model that treats "she" and "he" alike keeps its prediction (and its explanation) under the swap.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from audit.fairness import errors
from audit.fairness.terms import DEFAULT_NAMES, DEFAULT_SWAPS, NON_NOUN_FOLLOWERS

logger = logging.getLogger(__name__)

PredictProba = Callable[[list[str]], Any]
AttributeFn = Callable[[list[str]], Sequence[Any]]

# Only whitespace may separate the term from the next word; punctuation ends the phrase.
_NEXT_WORD = re.compile(r"\s*([A-Za-z]+)")


class IdentitySwapper:
    """Swaps every identity term in a text for its partner: whole words only, case preserved.

    A word with two partners ("her" -> "him" or "his"; "his" -> "her" or "hers") is resolved from the
    next word: a following noun-like word means the possessive determiner, anything else (punctuation,
    end of text, an article, preposition, adverb ...) the pronoun.
    """

    def __init__(
        self,
        swaps: Sequence[tuple[str, str]] = DEFAULT_SWAPS,
        names: Sequence[tuple[str, str]] = DEFAULT_NAMES,
    ) -> None:
        partners: dict[str, list[str]] = {}
        for pair in [*swaps, *names]:
            if (
                not isinstance(pair, (tuple, list))
                or len(pair) != 2
                or not all(isinstance(w, str) and re.fullmatch(r"[\w'-]+", w) for w in pair)
            ):
                raise ValueError(f"{errors.BAD_SWAPS}; got {pair!r}")
            a, b = pair[0].lower(), pair[1].lower()
            for src, dst in ((a, b), (b, a)):
                if dst not in partners.setdefault(src, []):
                    partners[src].append(dst)
        self.partners = partners
        words = sorted(partners, key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
        # Possessive determiners among the candidates, used to pick between two partners.
        self._determiners = {"his", "her", "their", "my", "your", "our", "its"}

    def find(self, text: str) -> list[str]:
        """The identity terms present in `text`, in order."""
        return [m.group(0) for m in self._pattern.finditer(text)]

    def swap(self, text: str) -> tuple[str, int]:
        """The swapped text and the number of words replaced."""
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            count += 1
            word = match.group(0)
            target = self._choose(word.lower(), text, match.end())
            return _match_case(word, target)

        return self._pattern.sub(replace, text), count

    def _choose(self, word: str, text: str, end: int) -> str:
        options = self.partners[word]
        if len(options) == 1:
            return options[0]
        nxt = _NEXT_WORD.match(text, end)
        noun_follows = nxt is not None and nxt.group(1).lower() not in NON_NOUN_FOLLOWERS
        determiners = [o for o in options if o in self._determiners]
        others = [o for o in options if o not in self._determiners]
        if noun_follows and determiners:
            return determiners[0]
        if not noun_follows and others:
            return others[0]
        return options[0]


def _match_case(source: str, target: str) -> str:
    if len(source) > 1 and source.isupper():
        return target.upper()
    if source[:1].isupper():
        return target[:1].upper() + target[1:]
    return target


@dataclass(frozen=True)
class SwapDetail:
    """One probed text: its swapped twin and how the prediction moved (the stored probe keeps those that flipped).

    `prob_change` is P_swapped(c) - P_original(c) for the class c predicted on the original text.
    `attribution_change` is the total-variation distance between the normalised |attribution|
    profiles of the two texts (0 = same profile, 1 = disjoint); None when not computed or when the
    two texts tokenise to different lengths.
    """

    index: int
    original: str
    swapped: str
    n_swaps: int
    original_class: int
    swapped_class: int
    original_prob: float
    swapped_prob: float
    prob_change: float
    flipped: bool
    attribution_change: float | None = None


@dataclass
class TextSwapProbeResult:
    """Flip rate and probability shift under identity-term swaps, over the texts that have such terms."""

    n_texts: int
    n_probed: int
    n_excluded: int
    excluded_indices: list[int]
    flip_rate: float
    mean_abs_prob_change: float
    max_abs_prob_change: float
    details: list[SwapDetail]
    mean_attribution_change: float | None = None
    n_attribution_mismatch: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, *, include_details: bool = True) -> dict[str, Any]:
        """JSON-safe summary (NaN -> None)."""
        out = {
            "n_texts": self.n_texts,
            "n_probed": self.n_probed,
            "n_excluded": self.n_excluded,
            "excluded_indices": list(self.excluded_indices),
            "flip_rate": _finite(self.flip_rate),
            "mean_abs_prob_change": _finite(self.mean_abs_prob_change),
            "max_abs_prob_change": _finite(self.max_abs_prob_change),
            "mean_attribution_change": _finite(self.mean_attribution_change),
            "n_attribution_mismatch": self.n_attribution_mismatch,
            "warnings": list(self.warnings),
        }
        if include_details:
            out["details"] = [asdict(d) for d in self.details]
        return out


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return float(value)


def text_swap_probe(
    predict_proba: PredictProba,
    texts: Sequence[str],
    *,
    swaps: Sequence[tuple[str, str]] = DEFAULT_SWAPS,
    names: Sequence[tuple[str, str]] = DEFAULT_NAMES,
    attribute_fn: AttributeFn | None = None,
    batch_size: int = 64,
) -> TextSwapProbeResult:
    """Swap gendered terms and names in each text and measure how the model's decision changes.

    Args:
        predict_proba: texts -> class probabilities [n, K] (numpy or torch); a 1-D output is read
            as P(class 1) of a binary model.
        texts: the texts to probe. Texts without any identity term are counted and excluded.
        swaps, names: word pairs swapped in both directions (whole words, any case, case preserved).
        attribute_fn: optional texts -> one 1-D attribution array per text; when given, the change
            of the |attribution| profile between each text and its swap is reported too.
        batch_size: texts per call of `predict_proba` / `attribute_fn`.

    Returns:
        flip_rate (fraction of probed texts whose predicted class changes), mean / max
        |P_swapped(c) - P_original(c)| for the originally predicted class c, per-text details.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(errors.NO_TEXTS)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("every entry of texts must be a string")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    swapper = IdentitySwapper(swaps, names)

    probed, swapped, counts, excluded = [], [], [], []
    for i, text in enumerate(texts):
        new, n = swapper.swap(text)
        if n == 0:
            excluded.append(i)
            continue
        probed.append(i)
        swapped.append(new)
        counts.append(n)
    notes: list[str] = []
    if excluded:
        notes.append(f"{len(excluded)} of {len(texts)} texts contain no identity term and were excluded")
    if not probed:
        notes.append("no text contains an identity term: nothing to probe")
        for note in notes:
            logger.warning(note)
        return TextSwapProbeResult(
            n_texts=len(texts), n_probed=0, n_excluded=len(excluded), excluded_indices=excluded,
            flip_rate=math.nan, mean_abs_prob_change=math.nan, max_abs_prob_change=math.nan,
            details=[], warnings=notes,
        )

    originals = [texts[i] for i in probed]
    p_orig = _predict(predict_proba, originals, batch_size)
    p_swap = _predict(predict_proba, swapped, batch_size)
    if p_orig.shape != p_swap.shape:
        raise ValueError(f"{errors.PROBA_SHAPE}; got {p_orig.shape} and {p_swap.shape} for the two passes")
    cls_orig = p_orig.argmax(axis=1)
    cls_swap = p_swap.argmax(axis=1)
    rows = np.arange(len(probed))
    prob_o = p_orig[rows, cls_orig]
    prob_s = p_swap[rows, cls_orig]
    change = prob_s - prob_o

    attr_change: list[float | None] = [None] * len(probed)
    mismatch = 0
    if attribute_fn is not None:
        a_orig = _attribute(attribute_fn, originals, batch_size)
        a_swap = _attribute(attribute_fn, swapped, batch_size)
        for j, (a, b) in enumerate(zip(a_orig, a_swap)):
            if a.shape != b.shape:
                mismatch += 1
                continue
            attr_change[j] = _profile_distance(a, b)
        if mismatch:
            notes.append(
                f"{mismatch} text(s) tokenise to a different length after the swap; "
                "their attribution change is not computed"
            )

    details = [
        SwapDetail(
            index=probed[j], original=originals[j], swapped=swapped[j], n_swaps=counts[j],
            original_class=int(cls_orig[j]), swapped_class=int(cls_swap[j]),
            original_prob=float(prob_o[j]), swapped_prob=float(prob_s[j]), prob_change=float(change[j]),
            flipped=bool(cls_orig[j] != cls_swap[j]), attribution_change=attr_change[j],
        )
        for j in range(len(probed))
    ]
    measured = [c for c in attr_change if c is not None]
    for note in notes:
        logger.info(note)
    return TextSwapProbeResult(
        n_texts=len(texts),
        n_probed=len(probed),
        n_excluded=len(excluded),
        excluded_indices=excluded,
        flip_rate=float(np.mean(cls_orig != cls_swap)),
        mean_abs_prob_change=float(np.mean(np.abs(change))),
        max_abs_prob_change=float(np.max(np.abs(change))),
        details=details,
        mean_attribution_change=float(np.mean(measured)) if measured else None,
        n_attribution_mismatch=mismatch,
        warnings=notes,
    )


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float64)


def _predict(predict_proba: PredictProba, texts: list[str], batch_size: int) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        out = _to_numpy(predict_proba(chunk))
        if out.ndim == 1:
            out = np.stack([1.0 - out, out], axis=1)
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise ValueError(f"{errors.PROBA_SHAPE}; got shape {out.shape} for {len(chunk)} texts")
        if not np.isfinite(out).all():
            raise ValueError("predict_proba returned NaN or infinite values")
        parts.append(out)
    return np.concatenate(parts, axis=0)


def _attribute(attribute_fn: AttributeFn, texts: list[str], batch_size: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        maps = list(attribute_fn(chunk))
        if len(maps) != len(chunk):
            raise ValueError(f"attribute_fn returned {len(maps)} attributions for {len(chunk)} texts")
        out += [_to_numpy(m).reshape(-1) for m in maps]
    return out


def _profile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between |a| and |b| normalised to sum 1 (0 when both are all zero)."""
    pa, pb = np.abs(a), np.abs(b)
    sa, sb = pa.sum(), pb.sum()
    if sa == 0 and sb == 0:
        return 0.0
    if sa == 0 or sb == 0:
        return 1.0
    return float(0.5 * np.abs(pa / sa - pb / sb).sum())
