"""Stochastic methods draw per sample from (seed, the sample): a sample's map does not depend on
its batch, its position in it, or its neighbours."""

from __future__ import annotations

import pytest
import torch

from audit.attribution import STOCHASTIC_METHODS, attribute, sample_seeds
from audit.models.zoo import SmallCNN

from .conftest import BatchInvariantCNN, structured_images

SMALL = dict(sg_samples=6, rise_masks=40, rise_cells=4, lime_samples=40, lime_segments=10, shap_samples=8)


def _models():
    torch.manual_seed(0)
    cnn = SmallCNN(in_channels=1, num_classes=10, width=8).eval()
    with torch.no_grad():
        cnn.fc.weight.mul_(20.0)
    torch.manual_seed(0)
    return {"small_cnn": cnn, "invariant": BatchInvariantCNN().eval()}


MODELS = _models()


def test_the_six_stochastic_methods_are_the_ones_checked_here():
    assert set(STOCHASTIC_METHODS) == {"smoothgrad", "smoothgrad_sq", "vargrad", "rise", "lime", "shap"}


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", ["smoothgrad", "smoothgrad_sq", "vargrad", "rise", "lime", "shap"])
def test_a_samples_map_does_not_depend_on_its_batch(model_name, method):
    model = MODELS[model_name]
    images = structured_images(4)
    x, other = images[:3], images[3:]
    with torch.no_grad():
        t = model(images).argmax(1)
    targets, other_target = t[:3], t[3:]
    # On real convolutions a different batch may round differently in the last bit (and the
    # automatic inference copy depends on the planned work); the invariant model must match exactly.
    tol = dict(rtol=0, atol=0) if model_name == "invariant" else dict(rtol=1e-5, atol=1e-6)

    batch = attribute(model, x, targets, [method], **SMALL)[method]
    for i in range(3):
        alone = attribute(model, x[i : i + 1], targets[i : i + 1], [method], **SMALL)[method]
        torch.testing.assert_close(batch[i], alone[0], **tol)

    perm = torch.tensor([2, 0, 1])
    permuted = attribute(model, x[perm], targets[perm], [method], **SMALL)[method]
    torch.testing.assert_close(permuted, batch[perm], **tol)

    # beside a sample it has never met, first and last
    mixed = attribute(model, torch.cat([other, x[1:2]]), torch.cat([other_target, targets[1:2]]), [method],
                      **SMALL)[method]
    torch.testing.assert_close(mixed[1], batch[1], **tol)

    # the draws are really per sample and really random: a different seed moves every map
    reseeded = attribute(model, x, targets, [method], seed=1, **SMALL)[method]
    for i in range(3):
        assert not torch.allclose(reseeded[i], batch[i], rtol=1e-4, atol=1e-8)


def test_identical_inputs_get_identical_draws_distinct_ones_do_not():
    x = structured_images(3)
    twice = torch.cat([x[:1], x[:1], x[1:]])
    assert sample_seeds(0, twice)[0] == sample_seeds(0, twice)[1]
    assert len(set(sample_seeds(0, x))) == 3
    assert sample_seeds(0, x) != sample_seeds(1, x)
    assert sample_seeds(0, x, salt="a") != sample_seeds(0, x, salt="b")
    assert sample_seeds(0, x[1:]) == sample_seeds(0, x)[1:]
    assert all(0 <= s < 2**63 for s in sample_seeds(-5, x))
    model = MODELS["small_cnn"]
    out = attribute(model, twice, 3, ["smoothgrad", "rise"], **SMALL)
    for m, maps in out.items():
        torch.testing.assert_close(maps[0], maps[1], rtol=0, atol=0)


def test_uniform_baselines_are_drawn_per_sample_too():
    from audit.attribution.baselines import make_baseline

    x = structured_images(3)
    both = make_baseline("uniform", x, seed=4)
    torch.testing.assert_close(make_baseline("uniform", x[2:], seed=4)[0], both[2], rtol=0, atol=0)
    model = MODELS["small_cnn"]
    ig = attribute(model, x, 1, ["integrated_gradients"], ig_steps=4, baseline="uniform")["integrated_gradients"]
    alone = attribute(model, x[1:2], 1, ["integrated_gradients"], ig_steps=4, baseline="uniform")
    torch.testing.assert_close(alone["integrated_gradients"][0], ig[1], rtol=1e-5, atol=1e-6)


def test_shap_is_the_expected_gradients_estimator_of_the_shap_library():
    """Oracle: ``shap.GradientExplainer`` fed the same references and the sample's own seed draws
    the same (reference, fraction) pairs, so the values agree to float rounding."""
    import numpy as np
    import shap
    from torch import nn

    from audit.attribution.baselines import default_blur_sigma, gaussian_blur

    model = MODELS["small_cnn"]
    x = structured_images(2)
    targets = torch.tensor([3, 7])
    n = 12
    ours = attribute(model, x, targets, ["shap"], shap_samples=n, seed=9)["shap"]

    class Column(nn.Module):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return model(inp)[:, self.k : self.k + 1]

    state = np.random.get_state()
    try:
        for i, seed in enumerate(sample_seeds(9, x)):
            refs = torch.cat([torch.zeros_like(x[i : i + 1]), gaussian_blur(x[i : i + 1], default_blur_sigma(32, 32))])
            explainer = shap.GradientExplainer(Column(int(targets[i])), refs, batch_size=5)
            theirs = np.asarray(explainer.shap_values(x[i : i + 1], nsamples=n, rseed=seed % 2**32))
            theirs = torch.as_tensor(theirs.reshape(x[i : i + 1].shape), dtype=torch.float32)
            scale = float(theirs.abs().max())
            assert scale > 0
            torch.testing.assert_close(ours[i], theirs[0], rtol=1e-4, atol=1e-5 * scale)
    finally:
        np.random.set_state(state)
