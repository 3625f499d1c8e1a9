"""The default CAM layer: the output of the last convolutional block (ResNets: ``layer4``), as in
the Grad-CAM literature and pytorch-grad-cam; the same rule at registration and in the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from audit.attribution import (
    attribute,
    default_layer,
    explain,
    method_costs,
    resolve_layer,
)
from audit.models.loading import find_default_target_layer
from audit.models.zoo import SmallCNN

from .test_against_grad_cam import minmax


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():  # randomised BatchNorm statistics: a network that is not near-linear
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_gradcam_default_layer_on_resnet18_matches_pytorch_grad_cam_layer4_last_block():
    model = _resnet18()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        targets = model(x).argmax(1)  # predicted classes: maps with positive evidence to compare
    res = explain(model, x, targets, ["gradcam"])  # layer=None
    assert res.layer == "layer4"
    ours = res.maps["gradcam"]
    assert (ours.flatten(1) > 0).any(1).all()

    peer_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        scaled = cam(input_tensor=x.clone(), targets=peer_targets)
        acts = cam.activations_and_grads.activations[0].cpu().numpy()
        grads = cam.activations_and_grads.gradients[0].cpu().numpy()
        raw = cam.get_cam_image(x, model.layer4[-1], peer_targets, acts, grads)
    # Raw: their weighted map at layer resolution with the CAM ReLU, upsampled as we upsample
    raw = torch.relu(torch.as_tensor(raw, dtype=torch.float32))
    assert raw.shape == (3, 3, 3)
    theirs_raw = F.interpolate(raw[:, None], size=(96, 96), mode="bilinear", align_corners=False)[:, 0]
    scale = float(theirs_raw.abs().max())
    torch.testing.assert_close(ours, theirs_raw, rtol=1e-4, atol=1e-6 * scale)
    # Their own output (min-max scaled, resized by OpenCV) against ours on the same scale
    np.testing.assert_allclose(minmax(ours), scaled, atol=1e-5)


def test_the_last_conv_inside_layer4_is_not_the_default_and_gives_another_map():
    model = _resnet18()
    x = torch.randn(1, 3, 64, 64)
    default = attribute(model, x, 2, ["gradcam"])["gradcam"]
    inner = attribute(model, x, 2, ["gradcam"], layer="layer4.1.conv2")["gradcam"]
    block = attribute(model, x, 2, ["gradcam"], layer="layer4")["gradcam"]
    torch.testing.assert_close(default, block, rtol=0, atol=0)
    assert not torch.allclose(default, inner, rtol=1e-3, atol=1e-6)


class VggLike(nn.Module):
    """torchvision VGG's layout (features ending in a max-pool, an adaptive 7x7 average pool, a
    classifier) at a size that builds in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(8 * 49, 16), nn.ReLU(inplace=True), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.mark.parametrize(
    ("build", "shape", "expected"),
    [
        (lambda: torchvision.models.resnet18(num_classes=3), (3, 64, 64), "layer4"),
        (lambda: torchvision.models.resnet50(num_classes=3), (3, 64, 64), "layer4"),
        (lambda: VggLike(), (3, 64, 64), "features"),  # not its 7x7 adaptive pool
        (lambda: torchvision.models.mobilenet_v3_small(num_classes=3), (3, 64, 64), "features"),
        (lambda: torchvision.models.densenet121(num_classes=3), (3, 64, 64), "features"),
        (lambda: SmallCNN(in_channels=1, num_classes=3, width=8), (1, 32, 32), "features"),
        (lambda: torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                      hidden_dim=8, mlp_dim=16, num_classes=3),
         (3, 32, 32), "encoder.layers.encoder_layer_1.ln_1"),
    ],
    ids=["resnet18", "resnet50", "vgg_like", "mobilenet_v3_small", "densenet121", "small_cnn", "vit"],
)
def test_registration_and_engine_pick_the_same_default_layer(build, shape, expected):
    model = build().eval()
    assert find_default_target_layer(model, shape) == expected
    assert resolve_layer(model, None, sample=torch.zeros(1, *shape)).name == expected
    res = explain(model, torch.rand(1, *shape), 0, ["gradcam"])
    assert res.layer == expected


def test_find_default_target_layer_without_input_shape_and_without_a_cnn():
    assert find_default_target_layer(torchvision.models.resnet18(num_classes=3).eval()) == "layer4"
    assert find_default_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None
    with pytest.raises(ValueError, match="no convolutional feature map"):
        default_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.zeros(1, 4))
    scripted = torch.jit.script(SmallCNN(in_channels=1, width=8).eval())
    assert find_default_target_layer(scripted, (1, 32, 32)) is None
    with pytest.raises(ValueError, match="TorchScript"):
        attribute(scripted, torch.rand(1, 1, 32, 32), 0, ["gradcam"])


class InplaceAfterFeatures(nn.Module):
    """The final map is changed in place after its module returns it (like DenseNet's F.relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        f = F.relu(f, inplace=True)
        return self.fc(F.adaptive_avg_pool2d(f, 1).flatten(1))


def test_default_layer_found_in_the_shared_pass_survives_a_later_in_place_op():
    torch.manual_seed(0)
    model = InplaceAfterFeatures().eval()
    with torch.no_grad():
        model.features[1].running_mean.normal_(0, 0.5)
    x = torch.randn(2, 1, 8, 8)
    found = explain(model, x, 1, ["gradcam", "gradcam_pp"])
    given = explain(model, x, 1, ["gradcam", "gradcam_pp"], layer="features")
    assert found.layer == "features"
    for m in ("gradcam", "gradcam_pp"):
        torch.testing.assert_close(found.maps[m], given.maps[m], rtol=0, atol=0)
    assert found.info["gradcam"].forward_calls == 2  # the map was re-read through the copying hook


def test_one_forward_finds_and_reads_the_default_layer():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, width=8).eval()
    res = explain(model, torch.rand(2, 1, 32, 32), 3, ["gradcam", "saliency"])
    assert res.layer == "features" and res.info["gradcam"].forward_calls == 1


def test_cost_table_resolves_the_default_layer():
    model = SmallCNN(in_channels=1, width=8).eval()
    costs = method_costs(model, (1, 32, 32), methods=["scorecam"], batch=2)
    assert costs["scorecam"].forward_samples == 2 * (1 + 16)  # SmallCNN(width=8) ends in 16 maps
