"""Every method on every architecture: shapes, finiteness, not all zero."""

from __future__ import annotations

import pytest
import torch
import torchvision

from audit.attribution import METHODS, attribute, explain
from audit.models.zoo import SmallCNN

SMALL = dict(
    ig_steps=4, sg_samples=3, rise_masks=24, lime_samples=24, lime_segments=12, shap_samples=3,
    occlusion_window=16, occlusion_stride=16, scorecam_max_channels=24,
)
GRID_METHODS = [m for m in METHODS if m != "attention_rollout"]


# Block outputs (post-activation) as the CAM layer: on untrained models the pre-activation maps
# of the last conv can sum to negative values everywhere, which the CAM ReLU turns into zeros.
def _small_cnn():
    return SmallCNN(in_channels=1, width=8), (1, 32, 32), "features.block3"


def _resnet18():
    return torchvision.models.resnet18(num_classes=10), (3, 64, 64), "layer4"


def _mobilenet():
    # At its init statistics the random network's activations vanish (logits ~1e-10, equal
    # probabilities); BatchNorm statistics measured on random inputs give it a real response.
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.rand(16, 3, 64, 64))
    return model, (3, 64, 64), "features"


ARCHS = {"small_cnn": _small_cnn, "resnet18": _resnet18, "mobilenet_v3_small": _mobilenet}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request):
    torch.manual_seed(0)
    model, shape, layer = ARCHS[request.param]()
    model.eval()
    x = torch.rand(2 if request.param == "small_cnn" else 1, *shape)  # batching covered on the small one
    with torch.no_grad():
        targets = model(x).argmax(1)  # predicted classes: their CAMs have positive evidence
    return request.param, model, x, targets, layer


@pytest.mark.parametrize("method", GRID_METHODS)
def test_every_method_on_every_architecture(arch, method):
    name, model, x, targets, layer = arch
    if method == "cam" and name == "mobilenet_v3_small":
        # its head is Linear-Hardswish-Linear after pooling: CAM is undefined and must say so
        with pytest.raises(ValueError, match="gradcam"):
            attribute(model, x, targets, methods=[method], layer=layer, **SMALL)
        res = explain(model, x, targets, [method], layer, **SMALL)  # a mixed request skips it with the reason
        assert method not in res.maps and "gradcam" in res.skipped[method]
        return
    res = explain(model, x, targets, [method], layer, **SMALL)
    out = res.maps[method]
    family = res.info[method].family
    expected = (x.shape[0], *x.shape[-2:]) if family == "cam" else tuple(x.shape)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()
    assert out.abs().flatten(1).sum(1).gt(0).all(), f"{method} on {name} is all zero for a sample"
    assert res.info[method].forward_samples > 0
    assert torch.equal(res.targets, targets)
