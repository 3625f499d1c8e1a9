"""Text counterfactuals on a tiny BERT (toy vocabulary) and on bag-of-words models with known answers."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from audit.counterfactuals import text_counterfactual

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = "the a movie film plot story was is very quite really good great fine bad awful poor and it".split()
POSITIVE, NEGATIVE = ["good", "great", "fine"], ["bad", "awful", "poor"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizer:
    folder = tmp_path_factory.mktemp("toy_vocab")
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + ["##s"]) + "\n", encoding="utf-8")
    return BertTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def sentiment_bert(tokenizer) -> nn.Module:
    """A 2-layer BERT trained for about a second: label 1 iff the adjective is positive."""
    rng = random.Random(0)
    torch.manual_seed(0)

    def sentence(label: int) -> str:
        return " ".join([rng.choice(["the", "a"]), rng.choice(["movie", "film", "plot", "story"]),
                         rng.choice(["was", "is"]), rng.choice(["very", "quite", "really"]),
                         rng.choice(POSITIVE if label else NEGATIVE)])

    data = [(sentence(i % 2), i % 2) for i in range(256)]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    model = BertForSequenceClassification(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(60):
            batch = rng.sample(data, 32)
            enc = tokenizer([b[0] for b in batch], return_tensors="pt", padding=True)
            loss = model(**enc, labels=torch.tensor([b[1] for b in batch])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


def predict(model, tokenizer, text: str) -> int:
    with torch.no_grad():
        return int(model(**tokenizer(text, return_tensors="pt")).logits.argmax())


class BagOfWords(nn.Module):
    """logit_1 = sum over tokens of embedding[:, score_dim]; logit_0 = 0 (a transformers-like interface)."""

    def __init__(self, vectors: torch.Tensor, score_dim: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.score_dim = score_dim

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None):
        emb = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        score = emb[..., self.score_dim].sum(dim=1)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def bow_vectors(tokenizer, values: dict[str, list[float]], dim: int) -> torch.Tensor:
    vectors = torch.zeros(len(tokenizer), dim)
    for token, vec in values.items():
        vectors[tokenizer.convert_tokens_to_ids(token)] = torch.tensor(vec)
    return vectors


@pytest.mark.parametrize("rank_by", ["gradient", "occlusion"])
def test_word_list_flip_on_tiny_bert(sentiment_bert, tokenizer, rank_by):
    text = "the movie was very good"
    assert predict(sentiment_bert, tokenizer, text) == 1
    cf = text_counterfactual(sentiment_bert, tokenizer, text, candidates=["bad", "awful", "poor", "zzzz"],
                             rank_by=rank_by, n_positions=2)
    assert cf.valid and cf.original_class == 1 and cf.cf_class == 0
    assert cf.n_substitutions == 1 and cf.changed_fraction == pytest.approx(1 / 5)
    assert cf.substitutions[0].old_token == "good" and cf.substitutions[0].new_token in NEGATIVE
    assert predict(sentiment_bert, tokenizer, cf.cf_text) == 0  # the returned text really flips
    assert any("zzzz" in w for w in cf.warnings)  # not a single token: skipped and said so
    json.dumps(cf.to_dict(), allow_nan=False)


def test_embedding_candidates_flip_and_never_touch_special_tokens(sentiment_bert, tokenizer):
    cf = text_counterfactual(sentiment_bert, tokenizer, "a plot is quite awful", n_neighbors=len(tokenizer))
    assert cf.valid and cf.cf_class == 1
    assert cf.tokens[0] == cf.cf_tokens[0] == "[CLS]" and cf.cf_tokens[-1] == "[SEP]"
    assert all(s.new_token not in SPECIALS and not s.new_token.startswith("##") for s in cf.substitutions)
    assert predict(sentiment_bert, tokenizer, cf.cf_text) == 1


def test_targeted_and_bad_targets(sentiment_bert, tokenizer):
    cf = text_counterfactual(sentiment_bert, tokenizer, "the film is really bad", target=1, candidates=POSITIVE)
    assert cf.valid and cf.cf_class == 1 and cf.target == 1
    with pytest.raises(ValueError, match="already predicts"):
        text_counterfactual(sentiment_bert, tokenizer, "the film is really bad", target=0)
    with pytest.raises(ValueError, match="not a class index"):
        text_counterfactual(sentiment_bert, tokenizer, "the film is really bad", target=7)
    with pytest.raises(ValueError, match="single token"):
        text_counterfactual(sentiment_bert, tokenizer, "the film is really bad", candidates=["zzzz"])


def test_impossible_flip_is_reported_invalid(sentiment_bert, tokenizer):
    frozen = BertForSequenceClassification(sentiment_bert.config).eval()
    with torch.no_grad():
        frozen.classifier.weight.zero_()
        frozen.classifier.bias.copy_(torch.tensor([1.0, 0.0]))
    cf = text_counterfactual(frozen, tokenizer, "the movie was very good", candidates="embedding")
    assert not cf.valid and cf.cf_class == cf.original_class == 0
    assert cf.n_substitutions == 0
    assert "no set of at most 3 substitution(s)" in cf.message
    assert cf.to_dict()["valid"] is False


def test_bag_of_words_needs_exactly_two_substitutions(tokenizer):
    # score(good) = +1, score(bad) = -1: "good good good" (score 3) needs two swaps to go below 0.
    model = BagOfWords(bow_vectors(tokenizer, {"good": [1.0], "bad": [-1.0]}, dim=1)).eval()
    text = "good good good"
    one = text_counterfactual(model, tokenizer, text, candidates=["bad"], max_substitutions=1)
    assert not one.valid and one.n_substitutions == 1
    three = text_counterfactual(model, tokenizer, text, candidates=["bad", "the"], max_substitutions=3)
    assert three.valid and three.n_substitutions == 2  # minimal: the third swap is not needed
    assert three.cf_text.split().count("bad") == 2
    assert three.changed_fraction == pytest.approx(2 / 3)


def test_embedding_neighbours_exclude_specials_and_word_pieces(tokenizer):
    # Cosine neighbours of "good": [MASK] (identical, special) and "##s" (word piece) are closer than
    # "bad"; only "bad" may be proposed, and only "bad" flips (the score reads the second coordinate).
    vectors = bow_vectors(tokenizer, {
        "good": [10.0, 1.0], "[MASK]": [10.0, 1.0], "##s": [10.0, 0.9], "bad": [10.0, -1.0], "great": [1.0, 10.0],
    }, dim=2)
    model = BagOfWords(vectors, score_dim=1).eval()
    cf = text_counterfactual(model, tokenizer, "good", n_neighbors=1)
    assert cf.valid and [s.new_token for s in cf.substitutions] == ["bad"]


def test_bad_arguments(sentiment_bert, tokenizer):
    with pytest.raises(ValueError, match="non-empty"):
        text_counterfactual(sentiment_bert, tokenizer, "  ")
    with pytest.raises(ValueError, match="max_substitutions"):
        text_counterfactual(sentiment_bert, tokenizer, "good", max_substitutions=0)
    with pytest.raises(ValueError, match="candidates must be"):
        text_counterfactual(sentiment_bert, tokenizer, "good", candidates="nearest")


class RuleModel(nn.Module):
    """Scores "good good good" by which of positions 1..3 hold "bad" (a lookup table, no gradients).

    Greedy search takes position 1 first (largest single drop) and needs all three swaps to flip, but
    positions {2, 3} alone already flip: the clean-up pass must undo the swap at position 1.
    """

    TABLE = {(): 3.0, (1,): 1.0, (2,): 1.5, (3,): 1.5, (1, 2): 0.5, (1, 3): 0.5, (2, 3): -1.0, (1, 2, 3): -0.5}

    def __init__(self, bad_id: int) -> None:
        super().__init__()
        self.bad_id = bad_id
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        scores = [self.TABLE[tuple(p for p in (1, 2, 3) if int(row[p]) == self.bad_id)] for row in input_ids]
        score = torch.tensor(scores) + 0 * self.dummy
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_unneeded_substitutions_are_undone(tokenizer):
    model = RuleModel(tokenizer.convert_tokens_to_ids("bad")).eval()
    cf = text_counterfactual(model, tokenizer, "good good good", candidates=["bad"])
    assert cf.valid
    assert [s.position for s in cf.substitutions] == [2, 3]
    assert cf.cf_text == "good bad bad"
