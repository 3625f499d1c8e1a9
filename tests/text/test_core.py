"""attribute_text as a whole: padding, words, targets, several architectures, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from audit.text import TEXT_METHODS, attribute_text, word_sum

FAST_METHODS = [m for m in TEXT_METHODS if m != "shap"]


def test_padding_never_changes_scores(tiny_bert, tokenizer, texts):
    short = texts[3]
    alone = attribute_text(tiny_bert, tokenizer, [short], targets=[1], methods=FAST_METHODS)[0]
    batched = attribute_text(tiny_bert, tokenizer, texts, targets=[0, 2, 1, 1], methods=FAST_METHODS)[3]
    assert batched.tokens == alone.tokens == ["[CLS]", "john", "[SEP]"]
    for method in FAST_METHODS:
        assert batched.scores[method].shape == (3,)
        torch.testing.assert_close(batched.scores[method], alone.scores[method], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(batched.word_scores[method], alone.word_scores[method], atol=2e-5, rtol=1e-4)
    assert batched.delta == pytest.approx(alone.delta, abs=1e-5)
    torch.testing.assert_close(batched.attentions, alone.attentions, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(batched.probabilities, alone.probabilities)


def test_results_follow_input_order_across_batches(tiny_bert, tokenizer, texts):
    one_batch = attribute_text(tiny_bert, tokenizer, texts, methods=["grad_x_input"], batch_size=16)
    many = attribute_text(tiny_bert, tokenizer, texts, methods=["grad_x_input"], batch_size=1)
    for a, b in zip(one_batch, many):
        assert a.text == b.text
        torch.testing.assert_close(a.scores["grad_x_input"], b.scores["grad_x_input"], atol=1e-5, rtol=1e-4)


def test_tokens_words_and_word_scores(tiny_bert, tokenizer):
    (r,) = attribute_text(tiny_bert, tokenizer, ["Mary's savings, working"], methods=["integrated_gradients"])
    assert r.tokens[0] == "[CLS]" and r.tokens[-1] == "[SEP]"
    assert r.special == [True] + [False] * (len(r.tokens) - 2) + [True]
    assert "working" in r.words and "savings" in r.words
    assert r.word_ids[0] is None and r.word_ids[-1] is None
    ig = r.scores["integrated_gradients"]
    expected = torch.zeros(len(r.words))
    for j, w in enumerate(r.word_ids):
        if w is not None:
            expected[w] += ig[j]
    torch.testing.assert_close(r.word_scores["integrated_gradients"], expected)
    assert len(r.token_ids) == len(r.tokens) == len(ig)


def test_word_sum_skips_special_tokens():
    out = word_sum(torch.tensor([5.0, 1.0, 2.0, 3.0, 7.0]), [None, 0, 0, 1, None], 2)
    torch.testing.assert_close(out, torch.tensor([3.0, 3.0]))


def test_default_target_is_the_prediction(tiny_bert, tokenizer, texts):
    res = attribute_text(tiny_bert, tokenizer, texts, methods=["grad_x_input"])
    for r in res:
        assert r.target == r.prediction == int(r.probabilities.argmax())
        assert float(r.probabilities.sum()) == pytest.approx(1.0, abs=1e-6)


def _tiny_distilbert(vocab):
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                           max_position_embeddings=64, initializer_range=0.2)
    return DistilBertForSequenceClassification(cfg).eval()


def _tiny_roberta(vocab):
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=70, pad_token_id=0, initializer_range=0.2)
    return RobertaForSequenceClassification(cfg).eval()


@pytest.mark.parametrize("build", [_tiny_distilbert, _tiny_roberta])
def test_other_bert_family_models(build, tokenizer, texts):
    model = build(len(tokenizer))
    batch = attribute_text(model, tokenizer, texts, methods=FAST_METHODS, ig_steps=64)
    alone = attribute_text(model, tokenizer, [texts[1]], methods=FAST_METHODS, ig_steps=64)[0]
    for method in FAST_METHODS:
        torch.testing.assert_close(batch[1].scores[method], alone.scores[method], atol=2e-5, rtol=1e-4)
    for r in batch:
        assert abs(r.delta) < 1e-2  # quadrature error at 64 steps; it shrinks with more steps
        assert r.attentions.shape[:2] == (2, 2)


def test_unsupported_models_raise_clear_errors(tokenizer):
    with pytest.raises(ValueError, match="no input-embedding layer"):
        attribute_text(nn.Linear(4, 2), tokenizer, ["she has income"])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        attribute_text(object(), tokenizer, ["she has income"])
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64)
    with pytest.raises(ValueError, match="sequence classifier"):
        attribute_text(BertModel(cfg).eval(), tokenizer, ["she has income"], methods=["grad_x_input"])
    with pytest.raises(ValueError, match="sequence classifier"):
        attribute_text(BertForTokenClassification(cfg).eval(), tokenizer, ["she has income"], methods=["attention"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(texts=[]), "non-empty list"),
        (dict(texts=[3]), "non-empty list"),
        (dict(methods=["lime"]), "unknown text attribution method"),
        (dict(targets=[0, 1]), "one target per text"),
        (dict(targets=5), "outside the model's 3 labels"),
        (dict(batch_size=0), "batch_size"),
        (dict(output="softmax"), "output must be"),
        (dict(occlusion_replacement="blank"), "occlusion_replacement"),
    ],
)
def test_bad_inputs_raise_value_errors(tiny_bert, tokenizer, kwargs, message):
    args = dict(texts=["she has income"], methods=["grad_x_input"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        attribute_text(tiny_bert, tokenizer, **args)


def test_tokenizer_without_pad_token_is_rejected(tiny_bert, tokenizer):
    class NoPad:
        pad_token_id = None

        def __call__(self, *a, **k):
            return tokenizer(*a, **k)

    with pytest.raises(ValueError, match="padding token"):
        attribute_text(tiny_bert, NoPad(), ["she has income"], methods=["grad_x_input"])


def test_progress_reaches_one(tiny_bert, tokenizer, texts):
    seen = []
    attribute_text(tiny_bert, tokenizer, texts, methods=["grad_x_input", "attention"], batch_size=2,
                   progress=lambda f, msg: seen.append((f, msg)))
    assert len(seen) == 4 and seen[-1][0] == pytest.approx(1.0)
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:]))


@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_bert_factory, tokenizer, texts):
    cpu_model = tiny_bert_factory(len(tokenizer), seed=3)
    gpu_model = tiny_bert_factory(len(tokenizer), seed=3).cuda()
    a = attribute_text(cpu_model, tokenizer, texts, methods=FAST_METHODS)
    b = attribute_text(gpu_model, tokenizer, texts, methods=FAST_METHODS)
    for x, y in zip(a, b):
        for method in FAST_METHODS:
            assert y.scores[method].device.type == "cpu"
            torch.testing.assert_close(x.scores[method], y.scores[method], atol=1e-4, rtol=1e-3)


def test_piece_grouping_without_word_ids():
    from audit.text._encoding import _words_from_pieces

    ids, words = _words_from_pieces(["[CLS]", "play", "##ing", "now", "[SEP]"], [True, False, False, False, True])
    assert (ids, words) == ([None, 0, 0, 1, None], ["playing", "now"])
    ids, words = _words_from_pieces(["<s>", "Play", "ing", "Ġnow", "Ġok", "</s>"], [True, False, False, False, False, True])
    assert (ids, words) == ([None, 0, 0, 1, 2, None], ["Playing", "now", "ok"])
