"""Default concept-test layers on any architecture: the last blocks of the main stack whose class gradient changes
with the input. A block followed only by linear operations (global average pooling and a linear head) has the same
class gradient for every input, which makes the TCAV score a coin per run; it is never chosen.

The checks on gradients use their own hook here, not the rule's probe, so a probe that saw the wrong tensor would
fail them."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from audit.concepts.layers import ERR_NO_LAYER, ERR_PROBE_INPUTS, choose_tcav_layers
from audit.models.zoo import SmallCNN


def class_gradients(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """[N, D]: the gradient of logit ``target`` w.r.t. the output of ``layer``, one input at a time. The layer's
    output is handed on as a copy, so an in-place activation after it cannot change the tensor we differentiate."""
    module = model.get_submodule(layer)
    rows = []
    for i in range(len(x)):
        box = {}

        def keep(_m, _a, out):
            t = out[0] if isinstance(out, tuple) else out
            box["out"] = t
            t.retain_grad()
            return (t.clone(), *out[1:]) if isinstance(out, tuple) else t.clone()

        handle = module.register_forward_hook(keep)
        try:
            logits = model(x[i : i + 1].clone().requires_grad_(True))
            logits = getattr(logits, "logits", logits)
            logits[0, target].backward()
        finally:
            handle.remove()
        rows.append(box["out"].grad.reshape(-1).clone())
    return torch.stack(rows)


def relative_spread(g: torch.Tensor) -> float:
    """Largest ||g_i - g_j|| / max(||g_i||, ||g_j||) over pairs of inputs."""
    out = 0.0
    for i in range(len(g)):
        for j in range(i + 1, len(g)):
            out = max(out, float((g[i] - g[j]).norm() / torch.maximum(g[i].norm(), g[j].norm()).clamp_min(1e-30)))
    return out


def probe_inputs(shape, n=3, seed=0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def assert_chosen_layers_vary(model, layers, x, classes):
    for layer in layers:
        for c in classes:
            assert relative_spread(class_gradients(model, layer, x, c)) > 1e-2, (layer, c)


# ----------------------------------------------------------------------------- ResNet-18: layer4 is never chosen


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4).eval()


def test_resnet18_never_gets_layer4(resnet18):
    x = probe_inputs((3, 64, 64))
    choice = choose_tcav_layers(resnet18, x)
    assert "layer4" not in choice.layers and "layer4.1" not in choice.layers
    assert choice.stack == ""  # the model's own children are its main stack
    # layer4 gives way to its first residual block; layer4.1 has layer4's output, so it is excluded too
    assert choice.layers == ["layer3", "layer4.0"]
    assert {"layer4", "layer4.1"} <= set(choice.excluded)

    for c in (0, 3):
        g = class_gradients(resnet18, "layer4", x, c)
        assert g.abs().max() > 0
        # pooling and a linear head: w_c / (H * W) at every position, for every input
        assert relative_spread(g) < 1e-6
        expected = (resnet18.fc.weight[c] / 4).detach()[:, None].expand(-1, 4).reshape(-1)  # 2 x 2 positions
        torch.testing.assert_close(g[0], expected)
    assert_chosen_layers_vary(resnet18, choice.layers, x, (0, 3))


def test_the_probe_sees_what_tcav_sees_on_other_inputs(resnet18):
    """The choice does not hang on the probe inputs: other random inputs, and inputs far from them, agree."""
    first = choose_tcav_layers(resnet18, probe_inputs((3, 64, 64), seed=1)).layers
    second = choose_tcav_layers(resnet18, 3.0 * probe_inputs((3, 64, 64), n=2, seed=2) + 1.0).layers
    assert first == second == ["layer3", "layer4.0"]


# ----------------------------------------------------------------------------- custom models


class PlainCNN(nn.Module):
    """A user's own CNN (no torchvision): a stem, three blocks and a head chosen by ``head``."""

    def __init__(self, head: str, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8 * 2**i, 16 * 2**i, 3, padding=1, stride=2), nn.ReLU()) for i in range(3))
        self.head_kind = head
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, classes))
        else:
            self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = x.amax((2, 3)) if self.head_kind == "maxpool" else x.mean((2, 3))
        return self.head(x)


@pytest.mark.parametrize("head", ["mlp", "maxpool"])
def test_a_nonlinear_tail_keeps_the_last_block(head):
    torch.manual_seed(0)
    model = PlainCNN(head).eval()
    x = probe_inputs((3, 32, 32))
    choice = choose_tcav_layers(model, x)
    assert choice.stack == "blocks"
    assert choice.layers == ["blocks.1", "blocks.2"]
    assert_chosen_layers_vary(model, choice.layers, x, range(3))


def test_the_same_model_with_average_pooling_and_a_linear_head_loses_its_last_block():
    torch.manual_seed(0)
    model = PlainCNN("linear").eval()
    x = probe_inputs((3, 32, 32))
    choice = choose_tcav_layers(model, x)
    assert "blocks.2" not in choice.layers and "blocks.2" in choice.excluded
    assert relative_spread(class_gradients(model, "blocks.2", x, 1)) < 1e-6
    # the block's convolution still has a ReLU after it, so it can stand in for the block
    assert choice.layers == ["blocks.1", "blocks.2.0"]
    assert_chosen_layers_vary(model, choice.layers, x, range(3))


def test_the_project_cnn_gives_way_inside_its_last_block():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = probe_inputs((1, 32, 32))
    choice = choose_tcav_layers(model, x)
    assert choice.layers == ["features.block2", "features.block3.bn"]
    assert relative_spread(class_gradients(model, "features.block3", x, 7)) < 1e-6
    assert_chosen_layers_vary(model, choice.layers, x, [0, 7])


def test_a_model_linear_after_every_block_has_no_default():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="no block of this model"):
        choose_tcav_layers(model, probe_inputs((3, 16, 16)))
    assert "layers=" in ERR_NO_LAYER


class TanhReadout(nn.Module):
    """Blocks, then a readout that is barely nonlinear: a tanh of the small averages of its last block."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.blocks(x).mean((2, 3))))


def test_a_nearly_linear_tail_is_a_fallback_with_a_warning(caplog):
    torch.manual_seed(0)
    model = TanhReadout().eval()
    x = probe_inputs((3, 16, 16))
    choice = choose_tcav_layers(model, x)
    assert choice.layers == ["blocks.0", "blocks.1"] and choice.rtol < 1e-2
    assert "close to a coin" in caplog.text
    assert 0 < relative_spread(class_gradients(model, "blocks.1", x, 0)) < 1e-2


def test_bad_probe_inputs_and_torchscript_are_refused():
    model = PlainCNN("mlp").eval()
    for bad in (probe_inputs((3, 32, 32), n=1), torch.zeros(3), ["only one"]):
        with pytest.raises(ValueError):
            choose_tcav_layers(model, bad, tokenizer=object())
    with pytest.raises(ValueError, match=ERR_PROBE_INPUTS[:20]):
        choose_tcav_layers(model, probe_inputs((3, 32, 32), n=1))
    with pytest.raises(ValueError, match="n must be"):
        choose_tcav_layers(model, probe_inputs((3, 32, 32)), n=0)
    scripted = torch.jit.script(model)
    with pytest.raises(ValueError, match="TorchScript"):
        choose_tcav_layers(scripted, probe_inputs((3, 32, 32)))


def test_an_unflattened_torch_export_gets_the_layers_of_the_eager_module():
    torch.manual_seed(0)
    model = PlainCNN("linear").eval()
    x = probe_inputs((3, 32, 32))
    exported = torch.export.unflatten(torch.export.export(model, (x[:1],)))  # a fixed batch of one
    eager = choose_tcav_layers(model, x).layers
    assert choose_tcav_layers(exported, x).layers == eager == ["blocks.1", "blocks.2.0"]
    assert relative_spread(class_gradients(exported, "blocks.2", x, 0)) < 1e-6


# ----------------------------------------------------------------------------- every architecture


def _tv_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=3)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: no gradient at all
    return model


def _tiny_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)], layer_scale=1.0, num_classes=3)


def _tiny_efficientnet():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    setting = [MBConvConfig(1, 3, 1, 16, 16, 1), MBConvConfig(4, 3, 2, 16, 24, 2), MBConvConfig(4, 3, 2, 24, 32, 1)]
    return EfficientNet(setting, dropout=0.2, num_classes=3)


ARCHITECTURES = {
    # name: (builder, input shape, the block that only linear operations follow, or None where the tail bends)
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=3, width_mult=0.25), (3, 64, 64),
                     "features.18"),
    "efficientnet_tiny": (_tiny_efficientnet, (3, 32, 32), "features.4"),
    "convnext_tiny": (_tiny_convnext, (3, 32, 32), None),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(num_classes=3), (3, 64, 64), None),
    "vit_tiny": (_tv_vit, (3, 32, 32), "encoder.ln"),
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_gets_layers_whose_gradient_varies(arch):
    build, shape, linear_tail = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = build().eval()
    x = probe_inputs(shape)
    choice = choose_tcav_layers(model, x)
    assert len(choice.layers) == 2
    assert_chosen_layers_vary(model, choice.layers, x, [0, 2])
    assert all(any(True for _ in model.get_submodule(n).parameters()) for n in choice.layers)
    if linear_tail is not None:
        assert linear_tail not in choice.layers and linear_tail in choice.excluded
        assert relative_spread(class_gradients(model, linear_tail, x, 0)) < 1e-6


# ----------------------------------------------------------------------------- through the concept service


def _register_torchvision(tmp_path, arch: str, kwargs: dict, size: int) -> None:
    from safetensors.torch import save_file

    from audit.services.core.registry import ModelSource, register_version

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(**kwargs)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    register_version(family=arch, version="1", task="image-classification",
                     source=ModelSource("state_dict", path, arch, kwargs), labels=["a", "b", "c"],
                     input_spec={"channels": 3, "height": size, "width": size, "mean": [0.5] * 3, "std": [0.25] * 3})


def test_the_service_takes_the_engine_choice_and_offers_it(audit_home, tmp_path):
    from audit.services.analyses.concepts.service import default_layers, layer_choices
    from audit.services.core.handles import handle_for

    _register_torchvision(tmp_path, "mobilenet_v2", {"num_classes": 3, "width_mult": 0.25}, 64)
    layers = default_layers("mobilenet_v2", "1")
    handle = handle_for("mobilenet_v2", "1")
    assert layers == choose_tcav_layers(handle.module, probe_inputs((3, 64, 64), seed=5)).layers
    assert "features.18" not in layers
    assert set(layers) <= set(layer_choices("mobilenet_v2", "1"))  # the page offers what it suggests


def test_hf_vit_gets_its_last_two_encoder_blocks(audit_home, tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    from audit.services.analyses.concepts.service import default_layers
    from audit.services.core.handles import handle_for
    from audit.services.core.registry import ModelSource, register_version

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=48, num_labels=2, id2label={0: "x", 1: "y"}, label2id={"x": 0, "y": 1})
    ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit", safe_serialization=True)
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    register_version(family="vit", version="1", task="image-classification", source=ModelSource("hf", tmp_path / "vit"),
                     labels=None)
    layers = default_layers("vit", "1")
    module = handle_for("vit", "1").module
    blocks = [n for n, m in module.named_modules() if type(m).__name__ == "ViTLayer"]
    assert len(blocks) == 3 and layers == blocks[-2:]
    # the final layer norm, read by a linear head on the [CLS] token, is what the rule keeps away from
    assert_chosen_layers_vary(module, layers, probe_inputs((3, 32, 32)), [0, 1])
