"""Counterfactual fairness probe: identity swaps and flip rates on toy predictors with known behaviour."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from audit.fairness import DEFAULT_SWAPS, IdentitySwapper, errors, text_swap_probe

GENDERED = [
    "She is a brilliant engineer.",
    "he fixed the bug quickly",
    "My sister said she would come.",
    "The man brought his order.",
    "Mary thanked him.",
]
NEUTRAL = ["The weather is nice today.", "Results were within tolerance."]


def depends_on_she(texts: list[str]) -> np.ndarray:
    """P(class 1) = 0.9 when the word 'she' occurs, else 0.1."""
    has = np.array([any(w.strip(".,").lower() == "she" or w.lower() in ("mary", "sister", "woman", "her")
                        for w in t.split()) for t in texts])
    p1 = np.where(has, 0.9, 0.1)
    return np.stack([1 - p1, p1], axis=1)


def gender_blind(texts: list[str]) -> np.ndarray:
    """Depends on the number of words only, which a one-word-for-one-word swap keeps."""
    p1 = 0.2 + 0.5 * np.array([len(t.split()) % 2 for t in texts])
    return np.stack([1 - p1, p1], axis=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She gave her book to him.", "He gave his book to her."),
        ("I saw her yesterday", "I saw him yesterday"),
        ("Give it to her, please", "Give it to him, please"),
        ("HE said his car is his.", "SHE said her car is hers."),
        ("Mary met John's brother", "John met Mary's sister"),
        ("Johnson and the heroes stayed.", "Johnson and the heroes stayed."),
        ("her dog and hers", "his dog and his"),
        ("The Widow thanked MS Smith", "The Widower thanked MR Smith"),
    ],
)
def test_swapper_is_word_bounded_case_preserving_and_resolves_his_her(text, expected):
    assert IdentitySwapper().swap(text)[0] == expected


def test_swapper_counts_and_custom_lists():
    swapper = IdentitySwapper(swaps=[("alpha", "beta")], names=[])
    assert swapper.swap("Alpha, beta and ALPHA") == ("Beta, alpha and BETA", 3)
    assert swapper.find("no terms here") == []
    with pytest.raises(ValueError, match=re.escape(errors.BAD_SWAPS)):
        IdentitySwapper(swaps=[("two words", "x")])
    with pytest.raises(ValueError, match=re.escape(errors.BAD_SWAPS)):
        IdentitySwapper(swaps=[("a", "b", "c")])


def test_probe_flips_every_gendered_text_of_a_gender_dependent_model():
    res = text_swap_probe(depends_on_she, GENDERED + NEUTRAL)
    assert res.n_texts == 7 and res.n_probed == 5 and res.n_excluded == 2
    assert res.excluded_indices == [5, 6]
    assert res.flip_rate == 1.0
    assert res.mean_abs_prob_change == pytest.approx(0.8)
    d = res.details[0]
    assert d.swapped == "He is a brilliant engineer." and d.original_class == 1 and d.swapped_class == 0
    assert d.prob_change == pytest.approx(-0.8) and d.flipped


def test_probe_reports_no_flip_for_a_gender_blind_model():
    res = text_swap_probe(gender_blind, GENDERED + NEUTRAL)
    assert res.flip_rate == 0.0
    assert res.mean_abs_prob_change == 0.0 and res.max_abs_prob_change == 0.0
    assert not any(d.flipped for d in res.details)


def test_probe_attribution_change_and_output_formats():
    def attribute(texts):  # attribution concentrated on feminine words
        return [torch.tensor([2.0 if w.strip(".,").lower() in ("she", "her", "mary", "sister") else 0.1
                              for w in t.split()]) for t in texts]

    def attribute_blind(texts):
        return [np.ones(len(t.split())) for t in texts]

    one_d = lambda texts: torch.tensor(depends_on_she(texts)[:, 1])  # noqa: E731 - P(class 1) only
    res = text_swap_probe(one_d, GENDERED, attribute_fn=attribute, batch_size=2)
    assert res.flip_rate == 1.0
    assert res.mean_attribution_change > 0.3
    blind = text_swap_probe(gender_blind, GENDERED, attribute_fn=attribute_blind)
    assert blind.mean_attribution_change == 0.0
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["flip_rate"] == 1.0 and out["n_probed"] == 5
    assert out["mean_attribution_change"] == pytest.approx(res.mean_attribution_change)
    assert [d["flipped"] for d in out["details"]] == [True] * 5


def test_probe_with_no_identity_terms_and_bad_outputs():
    res = text_swap_probe(gender_blind, NEUTRAL)
    assert res.n_probed == 0 and np.isnan(res.flip_rate)
    assert res.warnings == ["2 of 2 texts contain no identity term and were excluded",
                            "no text contains an identity term: nothing to probe"]
    assert res.to_dict()["flip_rate"] is None
    with pytest.raises(ValueError, match=re.escape(errors.NO_TEXTS)):
        text_swap_probe(gender_blind, [])
    with pytest.raises(ValueError, match=re.escape(errors.PROBA_SHAPE)):
        text_swap_probe(lambda t: np.ones((len(t), 2, 2)), GENDERED)
    with pytest.raises(TypeError):
        text_swap_probe(gender_blind, "she said")


def test_default_swaps_are_symmetric_pairs():
    swapper = IdentitySwapper()
    for a, b in DEFAULT_SWAPS:
        assert b in swapper.partners[a] and a in swapper.partners[b]


def test_the_stored_examples_are_the_engines_details_read_back():
    """One type from the probe to the stored result and back (a contract test: the engine writes, the reader reads)."""
    from audit.results.fairness import TextSwapProbe

    res = text_swap_probe(depends_on_she, GENDERED + NEUTRAL)
    flipped = tuple(d for d in res.details if d.flipped)
    assert len(flipped) >= 3
    probe = TextSwapProbe(dataset="notes", n=res.n_probed, n_excluded=res.n_excluded, flip_rate=res.flip_rate,
                          mean_prob_change=res.mean_abs_prob_change, max_prob_change=res.max_abs_prob_change,
                          examples=flipped)
    read = TextSwapProbe.from_summary(json.loads(json.dumps(probe.to_summary())))
    assert read.examples == flipped
    assert type(read.examples[0]) is type(res.details[0])
