"""Deletion / insertion curves and infidelity."""

from __future__ import annotations

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity

from audit.attribution import attribute
from audit.models.zoo import SmallCNN
from audit.quality import METRICS, deletion_curve, infidelity, insertion_curve


def test_deletion_of_perfect_attribution_beats_random(pixel_linear):
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    perfect = x * pixel_linear.w  # exact contributions of a linear model
    random = torch.rand_like(x)
    good = deletion_curve(pixel_linear, x, 0, perfect, steps=16)
    bad = deletion_curve(pixel_linear, x, 0, random, steps=16)
    worst = deletion_curve(pixel_linear, x, 0, -perfect, steps=16)
    assert good.mean_auc < bad.mean_auc < worst.mean_auc
    assert (good.auc < bad.auc).all()
    assert good.curves.shape == (4, 17) and good.fractions[0] == 0 and good.fractions[-1] == 1
    # endpoints: the untouched input and the fully deleted (all-zero) input
    with torch.no_grad():
        p0 = pixel_linear(x).softmax(1)[:, 0]
        p1 = pixel_linear(torch.zeros_like(x)).softmax(1)[:, 0]
    torch.testing.assert_close(good.curves[:, 0], p0)
    torch.testing.assert_close(good.curves[:, -1], p1)
    assert good.spec.direction == "lower" and good.spec.better(good.mean_auc, bad.mean_auc)


def test_insertion_of_perfect_attribution_beats_random(pixel_linear):
    torch.manual_seed(1)
    x = torch.rand(4, 1, 8, 8)
    perfect = x * pixel_linear.w
    good = insertion_curve(pixel_linear, x, 0, perfect, steps=16, canvas="zeros")
    bad = insertion_curve(pixel_linear, x, 0, torch.rand_like(x), steps=16, canvas="zeros")
    assert good.mean_auc > bad.mean_auc
    assert good.spec.direction == "higher" and METRICS["insertion_auc"] is good.spec


def test_deletion_auc_by_hand():
    class Count(torch.nn.Module):
        def forward(self, x):
            s = x.flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1) * 10

    x = torch.ones(1, 1, 2, 2)
    attr = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    res = deletion_curve(Count(), x, 0, attr, steps=4)
    expected = torch.sigmoid(torch.tensor([40.0, 30.0, 20.0, 10.0, 0.0]))
    torch.testing.assert_close(res.curves[0], expected)
    torch.testing.assert_close(res.auc[0], torch.trapezoid(expected, torch.linspace(0, 1, 5)))


def test_cam_maps_and_batching_are_accepted(pixel_linear):
    x = torch.rand(3, 1, 8, 8)
    cam_like = torch.rand(3, 8, 8)
    a = deletion_curve(pixel_linear, x, 0, cam_like, steps=5, batch_size=4)
    b = deletion_curve(pixel_linear, x, 0, cam_like, steps=5, batch_size=64)
    torch.testing.assert_close(a.auc, b.auc)
    with pytest.raises(ValueError, match="do not match"):
        deletion_curve(pixel_linear, x, 0, torch.rand(3, 4, 4), steps=5)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum_with_same_perturbations(normalize):
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    targets = torch.tensor([1, 4])
    attr = attribute(model, x, targets, ["grad_x_input"])["grad_x_input"]
    n = 5
    pert = 0.05 * torch.randn(2, n, 1, 32, 32)
    ours = infidelity(model, x, targets, attr, perturbations=pert, normalize=normalize)

    def perturb_fn(inputs):
        flat = pert.reshape(2 * n, 1, 32, 32)  # Captum expands inputs sample-major, like ours
        return flat, inputs - flat

    ref = captum_infidelity(model, perturb_fn, x, attr, target=targets, n_perturb_samples=n, normalize=normalize)
    torch.testing.assert_close(ours.values, ref.float(), rtol=1e-3, atol=1e-7)


def test_infidelity_prefers_the_exact_linear_explanation(pixel_linear):
    torch.manual_seed(2)
    x = torch.rand(2, 1, 8, 8)
    exact = 0.2 * pixel_linear.w.expand_as(x)  # gradient of logit_0 for the linear model... times I
    good = infidelity(pixel_linear, x, 0, exact, normalize=False, noise_std=0.2)
    bad = infidelity(pixel_linear, x, 0, torch.rand_like(x), normalize=False, noise_std=0.2)
    assert good.mean < 1e-8 < bad.mean
