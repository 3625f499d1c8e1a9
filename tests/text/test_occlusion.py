"""Leave-one-out occlusion against a direct loop of single forward passes."""

from __future__ import annotations

import pytest
import torch

from audit.text import attribute_text


def _f(model, ids, types, target):
    ids = torch.tensor([ids])
    with torch.no_grad():
        return float(model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           token_type_ids=torch.tensor([types])).logits[0, target])


@pytest.mark.parametrize("replacement", ["remove", "mask", "pad"])
def test_token_and_word_occlusion_match_a_direct_loop(tiny_bert, tokenizer, texts, replacement):
    res = attribute_text(tiny_bert, tokenizer, texts, methods=["occlusion"], occlusion_replacement=replacement,
                         batch_size=2)
    fill = {"mask": tokenizer.mask_token_id, "pad": tokenizer.pad_token_id}.get(replacement)
    for r in res:
        ids, types = list(r.token_ids), [0] * len(r.token_ids)
        full = _f(tiny_bert, ids, types, r.target)

        def without(positions):
            if replacement == "remove":
                keep = [j for j in range(len(ids)) if j not in positions]
                return [ids[j] for j in keep], [types[j] for j in keep]
            return [fill if j in positions else t for j, t in enumerate(ids)], types

        expected = [0.0 if r.special[j] else full - _f(tiny_bert, *without({j}), r.target) for j in range(len(ids))]
        torch.testing.assert_close(r.scores["occlusion"], torch.tensor(expected), atol=1e-5, rtol=1e-4)
        expected_words = []
        for w in range(len(r.words)):
            positions = {j for j, wid in enumerate(r.word_ids) if wid == w}
            expected_words.append(full - _f(tiny_bert, *without(positions), r.target))
        torch.testing.assert_close(r.word_scores["occlusion"], torch.tensor(expected_words), atol=1e-5, rtol=1e-4)


def test_word_occlusion_differs_from_token_sum_for_multi_piece_words(tiny_bert, tokenizer):
    (r,) = attribute_text(tiny_bert, tokenizer, ["she was working"], methods=["occlusion"])
    assert r.words == ["she", "was", "working"]
    pieces = [j for j, w in enumerate(r.word_ids) if w == 2]
    assert len(pieces) == 2
    summed = float(r.scores["occlusion"][pieces].sum())
    assert float(r.word_scores["occlusion"][2]) != pytest.approx(summed, abs=1e-6)
