"""Identity-term list, gender swapping, and the attribution share on gendered words."""

from __future__ import annotations

import pytest
import torch

from audit.text import (
    FEMALE_TERMS,
    GENDERED_TERMS,
    MALE_TERMS,
    TokenAttribution,
    attribute_text,
    gender_of_term,
    gendered_attribution_share,
    neutralise_gender,
    share_of_results,
    swap_gender,
)
from audit.text.share import term_mask


def test_term_sets():
    assert {"she", "her", "ms", "woman", "wife", "mary"} <= FEMALE_TERMS
    assert {"he", "his", "mr", "man", "husband", "john"} <= MALE_TERMS
    assert not FEMALE_TERMS & MALE_TERMS
    assert GENDERED_TERMS == FEMALE_TERMS | MALE_TERMS
    assert gender_of_term("Ms.") == "female" and gender_of_term("HE") == "male" and gender_of_term("loan") is None


def test_swap_gender_keeps_case_and_round_trips():
    text = "Ms Brown said she and her husband Mary-Ann repaid. MR JOHN"
    assert swap_gender(text) == "Mr Brown said he and his wife John-Ann repaid. MS MARY"
    assert swap_gender(swap_gender("She and her wife")) == "She and her wife"
    assert swap_gender("The applicant has savings") == "The applicant has savings"
    assert neutralise_gender("She and her husband") == "They and their spouse"


def _result(tokens, words, word_ids, special, scores):
    return TokenAttribution(
        text=" ".join(words), tokens=tokens, token_ids=list(range(len(tokens))), special=special, words=words,
        word_ids=word_ids, target=0, prediction=0, probabilities=torch.tensor([1.0]),
        scores={"integrated_gradients": torch.tensor(scores)},
    )


def test_share_of_hand_built_results():
    a = _result(["[CLS]", "she", "has", "sav", "##ings", "[SEP]"], ["She", "has", "savings"],
                [None, 0, 1, 2, 2, None], [True, False, False, False, False, True], [9.0, -2.0, 1.0, 0.5, 0.5, 9.0])
    b = _result(["[CLS]", "mr", ".", "has", "debt", "[SEP]"], ["Mr", ".", "has", "debt"],
                [None, 0, 1, 2, 3, None], [True, False, False, False, False, True], [0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    c = _result(["[CLS]", "the", "loan", "[SEP]"], ["the", "loan"],
                [None, 0, 1, None], [True, False, False, True], [0.0, 1.0, 3.0, 0.0])
    assert term_mask(a, GENDERED_TERMS).tolist() == [False, True, False, False, False, False]
    share = share_of_results([a, b, c], GENDERED_TERMS)
    assert share.per_text == pytest.approx([0.5, 0.25, 0.0])
    assert share.mean == pytest.approx(0.25)
    assert share.pooled == pytest.approx((2 + 1) / (4 + 4 + 4))
    assert share.texts_with_terms == 2


def test_share_on_a_model_agrees_with_attribute_text(tiny_bert, tokenizer, texts):
    share = gendered_attribution_share(tiny_bert, tokenizer, texts, ig_steps=16)
    results = attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"], ig_steps=16)
    manual = []
    for r in results:
        mass = r.scores["integrated_gradients"].abs()
        on = sum(float(mass[j]) for j, w in enumerate(r.word_ids)
                 if w is not None and r.words[w].lower() in GENDERED_TERMS)
        manual.append(on / float(mass.sum()))
    assert share.per_text == pytest.approx(manual, abs=1e-6)
    assert share.texts_with_terms == 3  # she / mr / john; the third text has none


def test_share_needs_the_method(tiny_bert, tokenizer):
    res = attribute_text(tiny_bert, tokenizer, ["she has income"], methods=["attention"])
    with pytest.raises(ValueError, match="no 'integrated_gradients' scores"):
        share_of_results(res, GENDERED_TERMS)
