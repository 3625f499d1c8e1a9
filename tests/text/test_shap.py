"""SHAP token values: the wrapper must hand back exactly what the shap library computes, per target."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import torch

from audit.text import attribute_text


def test_shap_values_match_the_library_and_are_efficient(tiny_bert, tokenizer, texts):
    chosen = texts[:3]
    res = attribute_text(tiny_bert, tokenizer, chosen, targets=[0, 2, 1], methods=["shap"], shap_max_evals=40,
                         shap_batch_size=8)

    def predict(strings):
        out = []
        for s in strings:
            enc = tokenizer([str(s)], return_tensors="pt")
            with torch.no_grad():
                out.append(tiny_bert(**enc).logits[0].double().numpy())
        return np.stack(out)

    direct = shap.explainers.Partition(predict, shap.maskers.Text(tokenizer))(
        chosen, max_evals=40, batch_size=8, silent=True
    )
    for i, (r, target) in enumerate(zip(res, [0, 2, 1])):
        values = np.asarray(direct[i].values)[:, target]
        assert values.shape == (len(r.tokens),)
        np.testing.assert_allclose(r.scores["shap"].numpy(), values, atol=1e-5)
        # efficiency: the values add up to f(x) minus the fully masked output
        full = predict([r.text])[0, target]
        base = np.asarray(direct[i].base_values)[target]
        assert float(r.scores["shap"].sum()) == pytest.approx(full - base, abs=1e-4)
        assert r.word_scores["shap"].shape == (len(r.words),)
