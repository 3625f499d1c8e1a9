"""Our methods against Captum's implementations of the same methods (same settings)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from audit.attribution import attribute, explain, sample_seeds

from .conftest import rank_corr


def test_saliency_and_grad_x_input_match_captum(small_cnn, gray_batch):
    targets = torch.tensor([3, 7])
    ours = attribute(small_cnn, gray_batch, targets, ["saliency", "grad_x_input"])
    sal = Saliency(small_cnn).attribute(gray_batch.clone(), target=targets, abs=True)
    ixg = InputXGradient(small_cnn).attribute(gray_batch.clone(), target=targets)
    torch.testing.assert_close(ours["saliency"], sal, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(ours["grad_x_input"], ixg, rtol=1e-4, atol=1e-7)


def test_saliency_signed_option(small_cnn, gray_batch):
    ours = attribute(small_cnn, gray_batch, 2, ["saliency"], saliency_abs=False)["saliency"]
    ref = Saliency(small_cnn).attribute(gray_batch.clone(), target=2, abs=False)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-7)
    assert (ours < 0).any()


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
)
def test_integrated_gradients_match_captum(small_cnn, gray_batch, method):
    targets = torch.tensor([1, 4])
    res = explain(small_cnn, gray_batch, targets, ["integrated_gradients"], ig_steps=12, ig_method=method)
    ref, delta = IntegratedGradients(small_cnn).attribute(
        gray_batch.clone(), target=targets, n_steps=12, method=method, return_convergence_delta=True
    )
    ours = res.maps["integrated_gradients"]
    if method == "riemann_trapezoid":
        # Captum spaces trapezoid nodes 1/n apart while placing them at linspace(0, 1, n), so its
        # weights sum to (n-1)/n; ours is the composite trapezoid rule (weights sum to 1).
        torch.testing.assert_close(ours * 11 / 12, ref.float(), rtol=2e-3, atol=1e-6)
        return
    torch.testing.assert_close(ours, ref.float(), rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(
        res.info["integrated_gradients"].completeness_delta, delta.float(), rtol=0.05, atol=1e-4
    )


def test_integrated_gradients_with_tensor_baseline_matches_captum(small_cnn, gray_batch):
    mean = gray_batch.mean(dim=0)  # a "dataset mean" reference
    ours = attribute(small_cnn, gray_batch, 5, ["integrated_gradients"], ig_steps=10, baseline=mean)
    ref = IntegratedGradients(small_cnn).attribute(
        gray_batch.clone(), baselines=mean.unsqueeze(0).expand_as(gray_batch), target=5, n_steps=10
    )
    torch.testing.assert_close(ours["integrated_gradients"], ref.float(), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("ours_name", "nt_type"), [("smoothgrad", "smoothgrad"), ("smoothgrad_sq", "smoothgrad_sq"), ("vargrad", "vargrad")]
)
def test_smoothgrad_family_matches_captum_noise_tunnel_with_same_noise(small_cnn, ours_name, nt_type):
    torch.manual_seed(2)
    x = torch.rand(1, 1, 32, 32)  # one sample: the noise stream lines up draw for draw
    samples, frac = 6, 0.2
    ours = attribute(small_cnn, x, 3, [ours_name], sg_samples=samples, sg_stdev=frac, seed=11)[ours_name]
    stdev = frac * float(x.max() - x.min())
    # Captum draws from the global generator; ours from the sample's own, seeded from (11, x)
    torch.manual_seed(sample_seeds(11, x)[0])
    ref = NoiseTunnel(Saliency(small_cnn)).attribute(
        x.clone(), nt_type=nt_type, nt_samples=samples, stdevs=stdev, target=3, abs=False
    )
    torch.testing.assert_close(ours, ref.float(), rtol=1e-3, atol=1e-8)


def test_smoothgrad_statistically_close_to_captum_on_a_batch(small_cnn, gray_batch):
    samples = 64
    ours = attribute(small_cnn, gray_batch, 0, ["smoothgrad"], sg_samples=samples, sg_stdev=0.1)["smoothgrad"]
    stdev = 0.1 * float(gray_batch[0].max() - gray_batch[0].min())
    torch.manual_seed(123)
    ref = NoiseTunnel(Saliency(small_cnn)).attribute(
        gray_batch.clone(), nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=0, abs=False
    )
    for b in range(2):
        assert rank_corr(ours[b], ref[b]) > 0.8


@pytest.mark.parametrize(("window", "stride"), [(8, 8), (8, 4), (6, 5)])
def test_occlusion_matches_captum(small_cnn, gray_batch, window, stride):
    targets = torch.tensor([2, 9])
    ours = attribute(
        small_cnn, gray_batch, targets, ["occlusion"], occlusion_window=window, occlusion_stride=stride
    )["occlusion"]
    ref = Occlusion(small_cnn).attribute(
        gray_batch.clone(), sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
        baselines=0.0, target=targets, perturbations_per_eval=7,
    )
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-6)


def test_occlusion_rgb_matches_captum():
    torch.manual_seed(0)
    from audit.models.zoo import SmallCNN

    model = SmallCNN(in_channels=3, width=8).eval()
    x = torch.rand(1, 3, 32, 32)
    ours = attribute(model, x, 1, ["occlusion"], occlusion_window=8, occlusion_stride=8, occlusion_baseline=0.5)
    ref = Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8), baselines=0.5, target=1
    )
    torch.testing.assert_close(ours["occlusion"], ref.float(), rtol=1e-4, atol=1e-6)


def test_gradcam_matches_captum_layer_gradcam_upsampled(small_cnn, gray_batch):
    targets = torch.tensor([6, 1])
    layer = small_cnn.features.block3.conv
    ours = attribute(small_cnn, gray_batch, targets, ["gradcam"], layer="features.block3.conv")["gradcam"]
    raw = LayerGradCam(small_cnn, layer).attribute(gray_batch.clone(), target=targets, relu_attributions=True)
    ref = LayerAttribution.interpolate(raw, (32, 32), interpolate_mode="bilinear")[:, 0]
    assert ours.shape == (2, 32, 32)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-7)
    assert ours.max() > 0


def test_gradcam_on_resnet_layer_name_matches_captum():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    ours = attribute(model, x, 4, ["gradcam"], layer="layer3")["gradcam"]
    raw = LayerGradCam(model, model.layer3).attribute(x, target=4, relu_attributions=True)
    ref = LayerAttribution.interpolate(raw, (64, 64), interpolate_mode="bilinear")[:, 0]
    torch.testing.assert_close(ours, ref.float(), rtol=1e-3, atol=1e-6)
