"""Independent oracle: captum's layer activations, layer gradients and TCAV on the same models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from captum.attr import LayerActivation, LayerGradientXActivation
from captum.concept import TCAV, Concept
from torch.utils.data import DataLoader

from audit.concepts import run_tcav_many
from audit.concepts.capture import Representation, collect_activations, resolve_layers, target_gradients
from audit.models.zoo import SmallCNN

from .conftest import TARGET

LAYERS = ["features.block2", "features.block3"]


@pytest.fixture
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_activations_and_gradients_match_captum(cnn):
    torch.manual_seed(1)
    x = torch.rand(10, 1, 32, 32)
    modules = [m for _, m in resolve_layers(cnn, LAYERS)]
    rep = Representation(torch.device("cpu"))
    acts = collect_activations(cnn, modules, x, rep, batch_size=4, layer_names=LAYERS)
    grads = target_gradients(cnn, modules, x, rep, 3, batch_size=4, layer_names=LAYERS)
    for module, act, grad in zip(modules, acts, grads):
        ref_act = LayerActivation(cnn, module).attribute(x)
        ref_grad = LayerGradientXActivation(cnn, module, multiply_by_inputs=False).attribute(x, target=3)
        torch.testing.assert_close(act, ref_act.flatten(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, ref_grad.flatten(1), rtol=1e-4, atol=1e-6)
        assert float(grad.abs().sum()) > 0


def _loader(t: torch.Tensor) -> DataLoader:
    return DataLoader(t, batch_size=64)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_scores_agree_with_captum_tcav_in_sign_and_trend(toy, sets, tmp_path):
    random.seed(0)  # captum shuffles its CAV train/test split with the stdlib RNG
    layers = ["layer1", "layer2"]
    randoms = sets.randoms[:6]
    aligned = Concept(0, "aligned", _loader(sets.aligned))
    opposed = Concept(1, "opposed", _loader(sets.opposed))
    rand = [Concept(10 + i, f"random_{i}", _loader(r)) for i, r in enumerate(randoms)]
    tcav = TCAV(toy, layers, model_id="toy", save_path=str(tmp_path) + "/")
    experiments = [[c, r] for c in (aligned, opposed) for r in rand]
    captum_scores = tcav.interpret(sets.inputs, experiments, target=TARGET)
    ours = run_tcav_many(toy, layers, {"aligned": sets.aligned, "opposed": sets.opposed}, randoms, sets.inputs, TARGET)
    for layer in layers:
        for concept, name in ((aligned, "aligned"), (opposed, "opposed")):
            theirs = [
                float(captum_scores[f"{concept.id}-{r.id}"][layer]["sign_count"][0]) for r in rand
            ]
            mine = ours.concepts[name].layers[layer].scores
            assert abs(np.mean(theirs) - np.mean(mine)) < 0.1
        assert np.mean(ours.concepts["aligned"].layers[layer].scores) > 0.9
        assert np.mean(ours.concepts["opposed"].layers[layer].scores) < 0.1
