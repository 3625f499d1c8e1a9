"""Sanity check (cascading randomisation), completeness, max-sensitivity, seed stability."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import Saliency
from captum.metrics import sensitivity_max

import math

import pytest
from torch import nn

from audit.attribution import attribute, spearman
from audit.models.zoo import SmallCNN
from audit.quality import (
    completeness,
    layer_groups,
    max_sensitivity,
    method_explainer,
    sanity_check,
    stability,
)
from audit.quality.sanity import constant_rows


def edge_detector(model, x, t):
    """Sobel magnitude of the input: an 'explanation' that never looks at the model."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(x, kx, padding=1)
    gy = F.conv2d(x, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()


def test_sanity_check_flags_edge_detector_not_gradcam():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(3, 1, 32, 32)
    res = sanity_check(model, x, None, {"edge": edge_detector, "gradcam": method_explainer("gradcam")}, max_steps=4)
    assert len(res.steps) == 4 and res.steps[0].startswith("fc")
    assert res.flagged == {"edge": True, "gradcam": False}
    assert res.status == {"edge": "unchanged", "gradcam": "changed"}
    assert min(res.correlations["edge"]) > 0.99
    # Randomising fc..block3 leaves an all-zero Grad-CAM (its ReLU): no correlation there, not a 0.
    assert res.undefined["gradcam"][0].all() and not res.undefined["gradcam"][1:].any()
    assert math.isnan(res.correlations["gradcam"][0])
    assert res.correlations["gradcam"][-1] < 0.5
    assert res.spec.direction == "lower"
    # the cascade ran on a copy: the caller's model still has its original weights
    torch.manual_seed(0)
    ref = SmallCNN(width=8).eval()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_sanity_check_with_engine_method_names():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    res = sanity_check(model, x, 0, ["saliency", "grad_x_input"], max_steps=3)
    assert set(res.correlations) == {"saliency", "grad_x_input"}
    assert res.per_sample["saliency"].shape == (3, 2)
    assert not res.flagged["saliency"]


def test_layer_groups_go_top_down_and_cover_everything():
    model = SmallCNN(width=8)
    groups = layer_groups(model, 2)
    flat = [n for g in groups for n in g]
    owners = [n for n, m in model.named_modules() if n and list(m.parameters(recurse=False))]
    assert flat == owners[::-1] and flat[0] == "fc" and flat[-1] == "features.block1.conv"
    assert len(groups) == 2


def test_completeness_of_ig_and_not_of_saliency():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    maps = attribute(model, x, 3, ["integrated_gradients", "saliency"], ig_steps=64)
    ig = completeness(model, x, 3, maps["integrated_gradients"])
    sal = completeness(model, x, 3, maps["saliency"])
    assert ig.relative_error.max() < 0.1  # ReLU kinks keep 64 steps from being exact
    assert sal.relative_error.min() > 10 * ig.relative_error.max()


def test_max_sensitivity_matches_captum():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    n = 4
    pert = (torch.rand(2, n, 1, 32, 32) * 2 - 1) * 0.02
    explainer = method_explainer("saliency")
    ours = max_sensitivity(explainer, model, x, torch.tensor([2, 5]), perturbations=pert)

    def perturb_fn(inputs, perturb_radius=0.02):
        return inputs + pert.reshape(2 * n, 1, 32, 32)

    ref = sensitivity_max(
        Saliency(model).attribute, x, perturb_func=perturb_fn, n_perturb_samples=n, target=torch.tensor([2, 5])
    )
    torch.testing.assert_close(ours.values, ref.float(), rtol=1e-3, atol=1e-6)
    assert ours.spec.direction == "lower"


def test_stability_separates_deterministic_and_stochastic_methods():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    det = stability(model, x, 0, "saliency", seeds=(0, 1, 2))
    sto = stability(model, x, 0, "smoothgrad", seeds=(0, 1, 2), sg_samples=2, sg_stdev=0.3)
    torch.testing.assert_close(det.rank_corr, torch.ones(2))
    assert det.relative_std.max() < 1e-6
    assert sto.mean_rank_corr < 0.99 and sto.relative_std.min() > 0.01


class ZeroOnReset(nn.Linear):
    """A linear layer whose re-initialisation zeroes it: after randomisation every gradient is 0."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


def zeroing_model() -> nn.Module:
    torch.manual_seed(0)
    head = ZeroOnReset(64, 2)
    with torch.no_grad():
        head.weight.normal_()
    return nn.Sequential(nn.Flatten(), head).eval()


def test_all_zero_randomised_saliency_is_undefined_not_changed():
    # Saliency of the randomised model is exactly zero: spearman() alone says 0 ("changed", a pass).
    x = torch.rand(3, 1, 8, 8)
    res = sanity_check(zeroing_model(), x, 0, ["saliency"], max_steps=1)
    assert res.status == {"saliency": "undefined"}
    assert res.flagged == {"saliency": True}
    assert res.undefined["saliency"].tolist() == [[True, True, True]]
    assert torch.isnan(res.per_sample["saliency"]).all()
    assert math.isnan(res.correlations["saliency"][0])
    assert res.constant_original["saliency"] == []
    assert res.reason("saliency").startswith("undefined: the fully randomised model's map is constant for 3 of 3")


def test_constant_trained_map_is_undefined():
    ones = lambda m, x, t: torch.ones_like(x)  # noqa: E731 - a constant "explanation"
    res = sanity_check(SmallCNN(width=8).eval(), torch.rand(2, 1, 32, 32), 0, {"flat": ones}, max_steps=2)
    assert res.status["flat"] == "undefined" and res.flagged["flat"]
    assert res.constant_original["flat"] == [0, 1]
    assert "trained model's map is constant" in res.reason("flat")


def test_one_constant_sample_is_left_out_of_the_mean_and_fails_the_method():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(3, 1, 32, 32)
    calls = []

    def explainer(m, inputs, t):
        # trained model: the input itself; randomised: the input, with sample 1 blanked to zeros
        calls.append(1)
        out = inputs.clone()
        if len(calls) > 1:
            out[1] = 0
            out[2] = inputs[2].flip(-1)
        return out

    res = sanity_check(model, x, 0, {"half": explainer}, max_steps=1)
    expected = spearman(x[2:3].flatten(1), x[2:3].flip(-1).flatten(1)).item()
    assert res.per_sample["half"][0, 0].item() == pytest.approx(1.0)
    assert math.isnan(res.per_sample["half"][0, 1].item())
    assert res.per_sample["half"][0, 2].item() == pytest.approx(expected, abs=1e-6)
    # the mean is over the two defined samples (1 and rho), not over three with a 0 for the blank one
    assert res.correlations["half"][0] == pytest.approx((1.0 + expected) / 2, abs=1e-6)
    assert res.status["half"] == "undefined" and res.flagged["half"]


def test_constant_rows_detects_zero_constant_and_non_finite_maps_only():
    rows = torch.stack([torch.zeros(16), torch.full((16,), 3.0), torch.full((16,), 3.0) + 1e-9 * torch.arange(16),
                        torch.arange(16.0), torch.full((16,), float("nan"))])
    assert constant_rows(rows).tolist() == [True, True, True, False, True]
