"""Attention, attention rollout and attention flow, checked against direct computations."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from audit.text import attribute_text
from audit.text.attention import attention_flow


def _attentions(model, tokenizer, text):
    enc = tokenizer([text], return_tensors="pt")
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
    return [a[0].double().numpy() for a in out.attentions]  # per layer [H, T, T]


def _rollout_direct(layers):
    t = layers[0].shape[-1]
    joint = np.eye(t)
    for a in layers:  # first layer first
        avg = a.mean(0) + np.eye(t)
        avg = avg / avg.sum(1, keepdims=True)
        joint = avg @ joint
    return joint[0]


def test_attention_and_rollout_match_direct_computation(tiny_bert, tokenizer, texts):
    res = attribute_text(tiny_bert, tokenizer, texts, methods=["attention", "attention_rollout"])
    for text, r in zip(texts, res):
        layers = _attentions(tiny_bert, tokenizer, text)
        t = len(r.tokens)
        assert r.attentions.shape == (2, 2, t, t)
        np.testing.assert_allclose(r.attentions.numpy(), np.stack(layers), atol=1e-6)
        np.testing.assert_allclose(r.scores["attention"].numpy(), layers[-1].mean(0)[0], atol=1e-6)
        np.testing.assert_allclose(r.scores["attention_rollout"].numpy(), _rollout_direct(layers), atol=1e-6)
        # rollout of row-stochastic matrices stays row-stochastic
        assert float(r.scores["attention_rollout"].sum()) == pytest.approx(1.0, abs=1e-5)


def test_attention_flow_matches_networkx_max_flow(tiny_bert, tokenizer, texts):
    res = attribute_text(tiny_bert, tokenizer, texts[:2], methods=["attention_flow"])
    for text, r in zip(texts, res):
        layers = _attentions(tiny_bert, tokenizer, text)
        t = len(r.tokens)
        graph = nx.DiGraph()
        for layer, a in enumerate(layers):
            aug = a.mean(0) + np.eye(t)
            aug = aug / aug.sum(1, keepdims=True)
            for i in range(t):
                for j in range(t):
                    graph.add_edge((layer, j), (layer + 1, i), capacity=float(aug[i, j]))
        expected = [nx.maximum_flow_value(graph, (0, j), (len(layers), 0)) for j in range(t)]
        np.testing.assert_allclose(r.scores["attention_flow"].numpy(), expected, atol=1e-5)


def test_attention_flow_on_a_hand_built_graph():
    # One layer, two tokens, no mixing: each token only reaches itself, so only [CLS] flows to [CLS].
    att = torch.eye(2).view(1, 1, 2, 2)
    np.testing.assert_allclose(attention_flow(att).numpy(), [1.0, 0.0], atol=1e-6)
    # Uniform attention: after the residual term [CLS] keeps 3/4 of its own row, token 1 gets 1/4.
    att = torch.full((1, 1, 2, 2), 0.5)
    np.testing.assert_allclose(attention_flow(att).numpy(), [0.75, 0.25], atol=1e-6)


def test_attention_flow_refuses_long_texts(tiny_bert, tokenizer):
    long_text = " ".join(["income"] * 40)
    with pytest.raises(ValueError, match="flow_max_tokens"):
        attribute_text(tiny_bert, tokenizer, [long_text], methods=["attention_flow"])


def test_attention_switches_to_eager_and_restores_the_model(tiny_bert, tokenizer):
    assert tiny_bert.config._attn_implementation == "sdpa"
    tiny_bert.train()
    try:
        res = attribute_text(tiny_bert, tokenizer, ["she has income"], methods=["attention"])
        assert res[0].attentions is not None
        assert tiny_bert.training
        assert tiny_bert.config._attn_implementation == "sdpa"
    finally:
        tiny_bert.eval()


def test_model_state_restored_when_the_model_raises(tiny_bert, tokenizer):
    class Boom(RuntimeError):
        pass

    def explode(module, args, kwargs, output):
        raise Boom("layer failed")

    handle = tiny_bert.bert.encoder.layer[1].register_forward_hook(explode, with_kwargs=True)
    try:
        with pytest.raises(Boom):
            attribute_text(tiny_bert, tokenizer, ["she has income"], methods=["attention_rollout"])
    finally:
        handle.remove()
    assert tiny_bert.config._attn_implementation == "sdpa"
    assert not tiny_bert.training


def test_edmonds_karp_matches_networkx_on_random_graphs():
    from audit.text.attention import max_flow_edmonds_karp

    rng = np.random.default_rng(0)
    for _ in range(5):
        cap = rng.random((9, 9)) * (rng.random((9, 9)) < 0.4)
        np.fill_diagonal(cap, 0.0)
        graph = nx.DiGraph()
        for u, v in zip(*np.nonzero(cap)):
            graph.add_edge(int(u), int(v), capacity=float(cap[u, v]))
        graph.add_nodes_from([0, 8])
        assert max_flow_edmonds_karp(cap, 0, 8) == pytest.approx(nx.maximum_flow_value(graph, 0, 8), abs=1e-9)


def test_edmonds_karp_agrees_with_the_flow_scores(tiny_bert, tokenizer):
    from audit.text.attention import max_flow_edmonds_karp, residual_attention

    (r,) = attribute_text(tiny_bert, tokenizer, ["she has stable income"], methods=["attention_flow"])
    layers = residual_attention(r.attentions.double()).numpy()
    n_layers, t, _ = layers.shape
    cap = np.zeros(((n_layers + 1) * t,) * 2)
    for layer in range(n_layers):
        cap[layer * t : (layer + 1) * t, (layer + 1) * t : (layer + 2) * t] = layers[layer].T
    expected = [max_flow_edmonds_karp(cap, j, n_layers * t) for j in range(t)]
    np.testing.assert_allclose(r.scores["attention_flow"].numpy(), expected, atol=1e-5)
