"""ERASER comprehensiveness and sufficiency on a bag-of-words model with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from audit.text.core import TokenAttribution
from audit.quality import Comprehensiveness, Sufficiency, eraser_scores

CLS, SEP, PAD, GOOD = 1, 2, 0, 7
W = 3.0


class BagOfWords(nn.Module):
    """Class-1 logit = W x (number of attended GOOD tokens); class 0 logit = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(16))
        with torch.no_grad():
            self.w[GOOD] = W

    def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN201
        one = (self.w[input_ids] * attention_mask).sum(1)
        return torch.stack([torch.zeros_like(one), one], dim=1)


def _attr(scores: list[float]) -> TokenAttribution:
    ids = [CLS, 4, 5, GOOD, 6, SEP]
    special = [True, False, False, False, False, True]
    return TokenAttribution(text="a b good c", tokens=["[CLS]", "a", "b", "good", "c", "[SEP]"], token_ids=ids,
                            special=special, words=["a", "b", "good", "c"], word_ids=[None, 0, 1, 2, 3, None],
                            target=1, prediction=1, probabilities=torch.tensor([0.0, 1.0]),
                            scores={"m": torch.tensor(scores)})


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_a_map_that_ranks_the_decisive_token_first_is_comprehensive_and_sufficient():
    right = eraser_scores(BagOfWords(), [_attr([9.0, 0.1, 0.2, 5.0, 0.3, 9.0])], ["m"], pad_id=PAD)["m"]
    # Removing GOOD (the top token in every bin) leaves 0.5; keeping only it keeps p(x).
    assert right.comprehensiveness == pytest.approx(_sigmoid(W) - 0.5, abs=1e-6)
    assert right.sufficiency == pytest.approx(0.0, abs=1e-6)
    assert right.per_bin[0.5] == pytest.approx((_sigmoid(W) - 0.5, 0.0), abs=1e-6)


def test_a_map_that_ranks_it_last_scores_the_opposite():
    wrong = eraser_scores(BagOfWords(), [_attr([0.0, 3.0, 2.0, -1.0, 1.0, 0.0])], ["m"], pad_id=PAD)["m"]
    # Up to half of the four content tokens are removed: GOOD (ranked last) stays in x \\ r, is absent from r.
    assert wrong.comprehensiveness == pytest.approx(0.0, abs=1e-6)
    assert wrong.sufficiency == pytest.approx(_sigmoid(W) - 0.5, abs=1e-6)
    assert wrong.texts == 1 and set(wrong.per_bin) == {0.01, 0.05, 0.1, 0.2, 0.5}


def test_bad_bins_and_missing_scores_are_refused():
    with pytest.raises(ValueError, match="bins must be fractions"):
        eraser_scores(BagOfWords(), [_attr([0.0] * 6)], ["m"], bins=(0.0, 2.0))
    with pytest.raises(ValueError, match="no scores for 'ig'"):
        eraser_scores(BagOfWords(), [_attr([0.0] * 6)], ["ig"])


def test_runs_on_a_transformer_and_its_integrated_gradients(tokenizer, tiny_bert, texts):
    from audit.text import attribute_text

    res = attribute_text(tiny_bert, tokenizer, texts[:3], None, ["integrated_gradients", "grad_x_input"], ig_steps=8)
    got = eraser_scores(tiny_bert, res, ["integrated_gradients", "grad_x_input"], pad_id=tokenizer.pad_token_id)
    assert set(got) == {"integrated_gradients", "grad_x_input"}
    for s in got.values():
        assert math.isfinite(s.comprehensiveness) and math.isfinite(s.sufficiency) and s.texts == 3
    # The 100% bin keeps every token for sufficiency: the text itself.
    full = eraser_scores(tiny_bert, res[:1], ["grad_x_input"], pad_id=tokenizer.pad_token_id, bins=(1.0,))
    comp, suff = full["grad_x_input"].per_bin[1.0]
    assert suff == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(comp)


def test_the_declared_metrics_score_each_text_like_the_batched_function():
    """Comprehensiveness and Sufficiency as QualityMetric: one value per text, its mean over the bins."""
    texts = [_attr([9.0, 0.1, 0.2, 5.0, 0.3, 9.0]), _attr([0.0, 3.0, 2.0, -1.0, 1.0, 0.0])]
    maps = [t.scores["m"] for t in texts]
    comp = Comprehensiveness(pad_id=PAD)(BagOfWords(), texts, None, maps)
    suff = Sufficiency(pad_id=PAD)(BagOfWords(), texts, None, maps)
    assert comp.spec is Comprehensiveness and suff.spec.direction == "lower" and comp.spec.modalities == ("text",)
    torch.testing.assert_close(comp.values, torch.tensor([_sigmoid(W) - 0.5, 0.0], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(suff.values, torch.tensor([0.0, _sigmoid(W) - 0.5], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    # Explaining class 0 instead: removing GOOD raises p(class 0), so the first map is anti-comprehensive.
    flipped = Comprehensiveness(pad_id=PAD)(BagOfWords(), texts[:1], [0], maps[:1])
    assert flipped.values[0] == pytest.approx(0.5 - _sigmoid(W), abs=1e-6)
