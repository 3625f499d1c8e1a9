"""Packed, length-bucketed text IG equals IG computed one text at a time, and stays complete."""

from __future__ import annotations

import pytest
import torch

from audit.text import attribute_text
from audit.text.gradients import SMALL_PACK_TOKENS, _packs

MIXED = [
    "John",
    "the client requests a small loan, working with high debt and several late payments in recent months",
    "She has stable income",
    "Mr Brown has several late payments and a poor credit score, his account was overdrawn six times",
    "no missed payments",
]


def test_packed_batch_equals_one_text_at_a_time(tiny_bert, tokenizer):
    # a small row cap forces packs that split texts and mix neighbours of similar length
    packed = attribute_text(tiny_bert, tokenizer, MIXED, methods=["integrated_gradients"], ig_steps=12,
                            internal_batch_size=7, batch_size=len(MIXED))
    lengths = {len(r.tokens) for r in packed}
    assert len(lengths) == len(MIXED)  # the set really mixes lengths
    for text, p in zip(MIXED, packed):
        (alone,) = attribute_text(tiny_bert, tokenizer, [text], targets=[p.target],
                                  methods=["integrated_gradients"], ig_steps=12, internal_batch_size=1000)
        assert p.text == text and p.tokens == alone.tokens  # results come back in the caller's order
        torch.testing.assert_close(p.scores["integrated_gradients"], alone.scores["integrated_gradients"],
                                   atol=1e-5, rtol=1e-4)
        assert p.delta == pytest.approx(alone.delta, abs=1e-5)


def test_packed_ig_is_complete(tiny_bert, tokenizer):
    res = attribute_text(tiny_bert, tokenizer, MIXED, methods=["integrated_gradients"], ig_steps=64,
                         internal_batch_size=50, batch_size=2)
    for r in res:
        ids = torch.tensor([r.token_ids])
        special = torch.tensor([r.special])
        base = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
        with torch.no_grad():
            fx = tiny_bert(input_ids=ids).logits[0, r.target]
            fb = tiny_bert(input_ids=base).logits[0, r.target]
        assert float(r.scores["integrated_gradients"].sum()) == pytest.approx(float(fx - fb), abs=1e-3)


def test_packs_cover_every_step_once_and_respect_limits():
    lengths = [5, 6, 7, 30, 31, 120]
    packs = _packs(list(range(6)), lengths, steps=10, rows=16)
    seen = {}
    for pack in packs:
        assert sum(k1 - k0 for _, k0, k1 in pack) <= 16
        in_pack = [lengths[i] for i, _, _ in pack]
        assert max(in_pack) <= 1.25 * min(in_pack)
        for i, k0, k1 in pack:
            seen.setdefault(i, []).extend(range(k0, k1))
    assert {i: sorted(v) for i, v in seen.items()} == {i: list(range(10)) for i in range(6)}


def test_only_small_packs_take_texts_of_another_length():
    # short texts share a pass (each alone would be a small, overhead-bound one)...
    assert len(_packs([0, 1, 2], [8, 9, 10], steps=50, rows=256)) == 1
    # ...a pack already wide enough pays nothing for company, so a longer text starts its own
    assert 50 * 110 > SMALL_PACK_TOKENS
    assert [[i for i, _, _ in p] for p in _packs([0, 1], [100, 110], steps=50, rows=256)] == [[0], [1]]
    # texts of one length always share, whatever the pack's size
    assert [[i for i, _, _ in p] for p in _packs([0, 1], [100, 100], steps=50, rows=256)] == [[0, 1]]
