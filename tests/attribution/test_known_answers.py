"""Known answers: IG of a linear model, completeness, CAM vs Grad-CAM on a GAP head, baselines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attribution import attribute, explain
from audit.attribution.baselines import gaussian_blur, make_baseline
from audit.models.zoo import SmallCNN

from .conftest import TinyNonlinear


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("baseline", [None, "ones", "blur", "uniform", 0.25])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle", "riemann_left"])
def test_ig_of_linear_model_is_difference_times_weight(baseline, method):
    model = Linear().eval()
    x = torch.randn(3, 3, 6, 6)
    targets = torch.tensor([0, 2, 4])
    res = explain(model, x, targets, ["integrated_gradients"], ig_steps=3, ig_method=method, baseline=baseline)
    base = make_baseline(baseline, x, seed=0)
    expected = (x - base) * model.fc.weight[targets].view(3, 3, 6, 6)
    torch.testing.assert_close(res.maps["integrated_gradients"], expected, rtol=1e-4, atol=1e-6)
    assert res.info["integrated_gradients"].completeness_delta.abs().max() < 1e-4


def test_ig_completeness_on_nonlinear_model():
    torch.manual_seed(3)
    model = TinyNonlinear().eval()
    x = torch.randn(2, 3, 8, 8)
    res = explain(model, x, torch.tensor([1, 3]), ["integrated_gradients"], ig_steps=64)
    attr = res.maps["integrated_gradients"]
    with torch.no_grad():
        gap = model(x)[[0, 1], [1, 3]] - model(torch.zeros_like(x))[[0, 1], [1, 3]]
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(res.info["integrated_gradients"].completeness_delta, attr.flatten(1).sum(1) - gap)
    # a coarse rule is visibly incomplete: the check can fail
    coarse = explain(model, x, torch.tensor([1, 3]), ["integrated_gradients"], ig_steps=2, ig_method="riemann_left")
    assert coarse.info["integrated_gradients"].completeness_delta.abs().max() > 1e-3


def test_adaptive_ig_reaches_tolerance_with_more_steps():
    torch.manual_seed(3)
    model = TinyNonlinear().eval()
    x = 3 * torch.randn(2, 3, 8, 8)
    res = explain(model, x, 0, ["integrated_gradients"], ig_steps=2, ig_method="riemann_right", ig_tolerance=2e-3)
    info = res.info["integrated_gradients"]
    assert info.completeness_delta.abs().max() <= 2e-3
    assert int(info.ig_steps_used.max()) > 2


def test_cam_equals_gradcam_times_area_on_gap_linear_model(gray_batch):
    # logits = W mean_hw(A) + b  =>  dlogit/dA = W / (h w): Grad-CAM weights are CAM weights / (h w)
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    maps = attribute(model, gray_batch, torch.tensor([2, 7]), ["cam", "gradcam"], layer="features.block3.relu")
    torch.testing.assert_close(maps["gradcam"] * 8 * 8, maps["cam"], rtol=1e-4, atol=1e-6)


def test_cam_refuses_models_without_gap_linear_head():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    with pytest.raises(ValueError, match="global.*average-pooled"):
        attribute(model, torch.randn(1, 3, 64, 64), 0, ["cam"])


def test_blur_baseline_is_gaussian_blur_and_uniform_stays_in_range():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 4 - 2
    blurred = make_baseline("blur", x, blur_sigma=2.0)
    torch.testing.assert_close(blurred, gaussian_blur(x, 2.0))
    assert blurred.std() < x.std()
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.15, rtol=0)
    u = make_baseline("uniform", x, seed=3)
    for b in range(2):
        assert x[b].min() <= u[b].min() and u[b].max() <= x[b].max()
    torch.testing.assert_close(u, make_baseline("uniform", x, seed=3))
    with pytest.raises(ValueError, match="baseline"):
        make_baseline("gray", x)
    mean = torch.tensor([0.1, 0.2, 0.3])
    torch.testing.assert_close(make_baseline(mean, x)[1, :, 5, 5], mean)


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    torch.manual_seed(0)
    x = torch.rand(1, 1, 20, 20)
    ours = gaussian_blur(x, 1.5)[0, 0].numpy()
    ref = gaussian_filter(x[0, 0].numpy().astype("float64"), sigma=1.5, mode="mirror", truncate=3.0)
    import numpy as np

    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_rise_of_a_single_pixel_model_peaks_on_that_region():
    class Spot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(8.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = x[:, 0, 4:8, 4:8].mean(dim=(1, 2)) * self.scale
            return torch.stack([v, -v], dim=1)

    x = torch.ones(1, 1, 16, 16)
    for method in ("rise", "occlusion", "lime"):
        m = attribute(Spot(), x, 0, [method], rise_masks=300, rise_cells=4, occlusion_window=4,
                      occlusion_stride=4, lime_samples=120, lime_segments=16, lime_hide=0.0)[method][0, 0]
        inside = m[4:8, 4:8].mean()
        outside = torch.cat([m[:4].flatten(), m[8:].flatten()]).mean()
        assert inside > outside + 1e-3, method
