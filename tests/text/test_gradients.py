"""Integrated Gradients and Grad x Input on word embeddings, checked against captum and known answers."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradientXActivation, LayerIntegratedGradients

from audit.text import attribute_text
from audit.text.gradients import path_nodes


def _encode(tokenizer, text):
    enc = tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], enc["special_tokens_mask"].bool()


def _forward(model):
    def f(ids, mask, types):
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    return f


@pytest.mark.parametrize(
    ("method", "baseline"),
    [("gausslegendre", "pad"), ("riemann_left", "pad"), ("riemann_right", "mask"), ("riemann_middle", "mask")],
)
def test_ig_matches_captum_layer_ig(tiny_bert, tokenizer, texts, method, baseline):
    steps = 16
    ours = attribute_text(
        tiny_bert, tokenizer, texts, targets=[0, 1, 2, 1], methods=["integrated_gradients"],
        ig_steps=steps, ig_method=method, ig_baseline=baseline,
    )
    lig = LayerIntegratedGradients(_forward(tiny_bert), tiny_bert.bert.embeddings.word_embeddings)
    fill = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
    for text, target, res in zip(texts, [0, 1, 2, 1], ours):
        ids, mask, types, special = _encode(tokenizer, text)
        base = torch.where(special, ids, torch.full_like(ids, fill))
        attr, delta = lig.attribute(
            ids, baselines=base, additional_forward_args=(mask, types), target=target,
            n_steps=steps, method=method, return_convergence_delta=True,
        )
        expected = attr.sum(-1)[0]
        torch.testing.assert_close(res.scores["integrated_gradients"], expected, atol=1e-5, rtol=1e-4)
        assert res.delta == pytest.approx(float(delta), abs=1e-5)
        assert res.target == target


def test_zero_baseline_matches_captum_ig_on_embeddings(tiny_bert, tokenizer, texts):
    ours = attribute_text(
        tiny_bert, tokenizer, texts, methods=["integrated_gradients"], ig_steps=20, ig_baseline="zero"
    )
    emb = tiny_bert.get_input_embeddings()
    for text, res in zip(texts, ours):
        ids, mask, types, special = _encode(tokenizer, text)
        x = emb(ids).detach()
        base = torch.where(special.unsqueeze(-1), x, torch.zeros_like(x))
        ig = IntegratedGradients(
            lambda e: tiny_bert(inputs_embeds=e, attention_mask=mask, token_type_ids=types).logits
        )
        expected = ig.attribute(x, baselines=base, target=res.target, n_steps=20).sum(-1)[0]
        torch.testing.assert_close(res.scores["integrated_gradients"], expected, atol=1e-5, rtol=1e-4)


def test_completeness_against_independent_forward_passes(tiny_bert, tokenizer, texts):
    res = attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"], ig_steps=64)
    for text, r in zip(texts, res):
        ids, mask, types, special = _encode(tokenizer, text)
        base = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
        with torch.no_grad():
            fx = tiny_bert(input_ids=ids, attention_mask=mask, token_type_ids=types).logits[0, r.target]
            fb = tiny_bert(input_ids=base, attention_mask=mask, token_type_ids=types).logits[0, r.target]
        total = float(r.scores["integrated_gradients"].sum())
        assert total == pytest.approx(float(fx - fb), abs=1e-3)
        assert abs(r.delta) < 1e-3
        assert r.delta == pytest.approx(total - float(fx - fb), abs=1e-5)
        # special tokens equal their baseline, so they receive nothing
        assert torch.all(r.scores["integrated_gradients"][torch.tensor(r.special)] == 0)


def test_completeness_gap_shrinks_with_steps(tiny_bert, tokenizer, texts):
    coarse = attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"],
                            ig_steps=3, ig_method="riemann_trapezoid")
    fine = attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"],
                          ig_steps=200, ig_method="riemann_trapezoid")
    assert sum(abs(r.delta) for r in fine) < sum(abs(r.delta) for r in coarse)
    assert max(abs(r.delta) for r in fine) < 1e-3


def test_probability_output_is_explained(tiny_bert, tokenizer, texts):
    res = attribute_text(tiny_bert, tokenizer, texts[:2], methods=["integrated_gradients"], ig_steps=64,
                         output="probability")
    for r in res:
        ids, mask, types, special = _encode(tokenizer, r.text)
        base = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
        with torch.no_grad():
            pb = tiny_bert(input_ids=base, attention_mask=mask, token_type_ids=types).logits.softmax(-1)[0, r.target]
        expected = float(r.probabilities[r.target] - pb)
        assert float(r.scores["integrated_gradients"].sum()) == pytest.approx(expected, abs=1e-4)


def test_grad_x_input_matches_captum(tiny_bert, tokenizer, texts):
    ours = attribute_text(tiny_bert, tokenizer, texts, targets=1, methods=["grad_x_input"])
    gxa = LayerGradientXActivation(_forward(tiny_bert), tiny_bert.bert.embeddings.word_embeddings)
    for text, res in zip(texts, ours):
        ids, mask, types, _ = _encode(tokenizer, text)
        expected = gxa.attribute(ids, target=1, additional_forward_args=(mask, types)).sum(-1)[0]
        torch.testing.assert_close(res.scores["grad_x_input"], expected, atol=1e-6, rtol=1e-4)


def test_grad_x_input_and_attention_share_one_forward_pass(tiny_bert, tokenizer, texts):
    calls = []
    hook = tiny_bert.register_forward_hook(lambda module, inputs, output: calls.append(1))
    try:
        together = attribute_text(tiny_bert, tokenizer, texts, targets=1, batch_size=len(texts),
                                  methods=["grad_x_input", "attention", "attention_rollout"])
    finally:
        hook.remove()
    assert len(calls) == 1  # one pass of the batch: predictions, attentions and the gradient's graph
    alone = attribute_text(tiny_bert, tokenizer, texts, targets=1, methods=["attention_rollout"])
    gxa = LayerGradientXActivation(_forward(tiny_bert), tiny_bert.bert.embeddings.word_embeddings)
    for text, t, a in zip(texts, together, alone):
        ids, mask, types, _ = _encode(tokenizer, text)
        expected = gxa.attribute(ids, target=1, additional_forward_args=(mask, types)).sum(-1)[0]
        torch.testing.assert_close(t.scores["grad_x_input"], expected, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(t.scores["attention_rollout"], a.scores["attention_rollout"])
        torch.testing.assert_close(t.probabilities, a.probabilities)


def test_grad_x_input_gets_its_own_pass_when_the_embedding_runs_twice(tiny_bert, tokenizer, texts):
    from audit.text.core import _SharedPass

    shared = _SharedPass(tiny_bert.bert.embeddings.word_embeddings)
    ids, mask, types, _ = _encode(tokenizer, texts[0])
    with shared:
        tiny_bert.bert.embeddings.word_embeddings(ids)  # a model that calls its embedding twice
        logits = tiny_bert(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert len(shared.outputs) == 2
    assert shared.grad_x_input(logits, torch.tensor([1]), None, "logit") is None


def test_internal_batch_size_does_not_change_results(tiny_bert, tokenizer, texts):
    def run(rows):
        return attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"], ig_steps=10,
                              internal_batch_size=rows)

    for x, y in zip(run(1), run(1000)):
        torch.testing.assert_close(
            x.scores["integrated_gradients"], y.scores["integrated_gradients"], atol=1e-6, rtol=1e-5
        )


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_path_nodes_integrate_known_functions(method):
    alphas, weights = path_nodes(40, method)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.all((alphas >= 0) & (alphas <= 1))
    integral = float((weights * torch.cos(alphas)).sum())
    assert integral == pytest.approx(math.sin(1.0), abs=1e-3)


def test_gauss_legendre_is_exact_for_polynomials():
    alphas, weights = path_nodes(4, "gausslegendre")
    # 4 nodes integrate degree <= 7 exactly: integral of a^7 over [0, 1] is 1/8
    assert float((weights * alphas**7).sum()) == pytest.approx(1 / 8, abs=1e-12)


def test_tolerance_refines_only_the_texts_that_need_it(tiny_bert, tokenizer, texts):
    def run(**options):
        return attribute_text(tiny_bert, tokenizer, texts, methods=["integrated_gradients"], **options)

    coarse = run(ig_steps=2)
    tolerance = sorted(abs(r.delta) for r in coarse)[len(texts) // 2]  # about half the texts are within it
    adaptive = run(ig_steps=2, ig_tolerance=tolerance, ig_max_steps=256)
    assert all(abs(r.delta) <= tolerance for r in adaptive)
    refined = 0
    for c, a in zip(coarse, adaptive):
        if abs(c.delta) <= tolerance:  # within tolerance at two points: kept as computed there
            torch.testing.assert_close(a.scores["integrated_gradients"], c.scores["integrated_gradients"])
            continue
        refined += 1
        # a refined text is exactly its fixed-step result at some doubling of the start
        matches = [s for s in (4, 8, 16, 32, 64, 128, 256) if torch.allclose(
            a.scores["integrated_gradients"],
            attribute_text(tiny_bert, tokenizer, [a.text], methods=["integrated_gradients"],
                           ig_steps=s)[0].scores["integrated_gradients"], atol=1e-6, rtol=1e-5)]
        assert matches, a.text
    assert refined >= 1


@pytest.mark.parametrize("bad", [dict(ig_steps=0), dict(ig_method="simpson"), dict(ig_baseline="noise"),
                                 dict(ig_tolerance=0), dict(ig_tolerance="small"), dict(ig_steps=8, ig_max_steps=4)])
def test_bad_ig_options_raise(tiny_bert, tokenizer, bad):
    with pytest.raises(ValueError, match="ig_"):
        attribute_text(tiny_bert, tokenizer, ["she has income"], methods=["integrated_gradients"], **bad)
