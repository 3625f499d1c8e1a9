"""Our CAM family against pytorch-grad-cam (which min-max scales: we compare on that scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from audit.attribution import attribute

from .conftest import rank_corr


def minmax(maps: torch.Tensor) -> np.ndarray:
    flat = maps.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    return ((maps - lo) / (hi - lo + 1e-7)).numpy()


def peer(cls, model, layer, x, targets):
    with cls(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in targets])


@pytest.mark.parametrize(("ours", "cls"), [("gradcam", GradCAM), ("gradcam_pp", GradCAMPlusPlus)])
def test_gradient_cams_match_pytorch_grad_cam(small_cnn, gray_batch, ours, cls):
    # pytorch-grad-cam adds 1e-6 to the Grad-CAM++ denominator 2g^2 + sum(A) g^3; scaling the
    # logits up makes g^2 >> 1e-6 so the exact closed form and the regularised one coincide.
    with torch.no_grad():
        small_cnn.fc.weight.mul_(100.0)
        small_cnn.fc.bias.mul_(100.0)
    targets = torch.tensor([6, 8])  # classes whose maps are partly positive: a real comparison
    mine = attribute(small_cnn, gray_batch, targets, [ours], layer="features.block3.conv")[ours]
    assert (mine.flatten(1) > 0).any(1).all()
    theirs = peer(cls, small_cnn, small_cnn.features.block3.conv, gray_batch, targets)
    assert mine.shape == theirs.shape == (2, 32, 32)
    np.testing.assert_allclose(minmax(mine), theirs, atol=2e-3)
    for b in range(2):
        assert rank_corr(mine[b], theirs[b]) > 0.99


def test_gradcam_pp_on_resnet_matches_pytorch_grad_cam():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([1, 2])
    mine = attribute(model, x, targets, ["gradcam", "gradcam_pp"], layer="layer4")
    for name, cls in (("gradcam", GradCAM), ("gradcam_pp", GradCAMPlusPlus)):
        theirs = peer(cls, model, model.layer4, x, targets)
        np.testing.assert_allclose(minmax(mine[name]), theirs, atol=5e-3)


def test_scorecam_agrees_with_pytorch_grad_cam(small_cnn, gray_batch):
    targets = torch.tensor([6, 5])
    # Post-ReLU maps: the softmax-weighted sum of non-negative maps is positive, so there is
    # something to compare (pre-ReLU maps of this random model sum to negative values).
    mine = attribute(small_cnn, gray_batch, targets, ["scorecam"], layer="features.block3.relu")["scorecam"]
    theirs = peer(ScoreCAM, small_cnn, small_cnn.features.block3.relu, gray_batch, targets)
    assert (mine.flatten(1) > 0).any(1).all()
    # Masks: we upsample with half-pixel bilinear, pytorch-grad-cam with align_corners=True, so
    # maps agree in rank, not to the last digit.
    for b in range(2):
        assert rank_corr(mine[b], theirs[b]) > 0.9


def test_cam_maps_are_raw_not_minmax_scaled(small_cnn, gray_batch):
    maps = attribute(small_cnn, gray_batch, 5, ["gradcam", "gradcam_pp", "cam"])
    for name, m in maps.items():
        assert m.amax() > 0, name
        assert m.min() >= 0, name  # the methods' own ReLU
        assert not torch.allclose(m.amax(dim=(1, 2)), torch.ones(2)), f"{name} looks min-max scaled"


def test_scorecam_channel_limit_keeps_the_top_channels(small_cnn, gray_batch):
    layer = "features.block3.relu"
    full = attribute(small_cnn, gray_batch, 5, ["scorecam"], layer=layer)["scorecam"]
    same = attribute(small_cnn, gray_batch, 5, ["scorecam"], layer=layer, scorecam_max_channels=10_000)["scorecam"]
    torch.testing.assert_close(full, same)
    top = attribute(small_cnn, gray_batch, 5, ["scorecam"], layer=layer, scorecam_max_channels=4)["scorecam"]
    assert not torch.allclose(full, top)
    assert top.shape == full.shape and torch.isfinite(top).all()
