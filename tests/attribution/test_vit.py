"""Vision transformer support: attention rollout and Grad-CAM on a token grid, no hand config."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from audit.attribution import activation_maximization, attention_rollout, attribute, explain, live_hook_count
from audit.attribution.methods.attention_rollout import collect_attentions


@pytest.fixture
def vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.2)  # torchvision zero-initialises the head
    return model


def test_recomputed_attention_matches_need_weights_oracle(vit):
    x = torch.rand(2, 3, 32, 32)
    ours = collect_attentions(vit, x)
    assert len(ours) == 2 and ours[0].shape == (2, 2, 17, 17)
    # Oracle: rerun each block's attention with need_weights=True on the same input.
    h = vit._process_input(x)
    h = torch.cat([vit.class_token.expand(2, -1, -1), h], dim=1) + vit.encoder.pos_embedding
    with torch.no_grad():
        for block, att in zip(vit.encoder.layers, ours):
            y = block.ln_1(h)
            _, ref = block.self_attention(y, y, y, need_weights=True, average_attn_weights=False)
            torch.testing.assert_close(att, ref, rtol=1e-4, atol=1e-6)
            h = block(h)
    assert live_hook_count(vit) == 0


def test_attention_rollout_by_hand(vit):
    x = torch.rand(1, 3, 32, 32)
    atts = collect_attentions(vit, x)
    eye = torch.eye(17)
    a1 = atts[0].mean(1)[0] + eye
    a1 = a1 / a1.sum(-1, keepdim=True)
    a2 = atts[1].mean(1)[0] + eye
    a2 = a2 / a2.sum(-1, keepdim=True)
    expected_row = (a2 @ a1)[0, 1:].view(4, 4)
    maps = attention_rollout(vit, x)
    assert maps.shape == (1, 32, 32)
    small = torch.nn.functional.interpolate(maps[None], size=(4, 4), mode="area")[0, 0]
    # area-downsampling the bilinear upsampling recovers the 4x4 grid closely
    assert torch.corrcoef(torch.stack([small.flatten(), expected_row.flatten()]))[0, 1] > 0.95
    torch.testing.assert_close(maps.mean(), expected_row.mean(), rtol=0.05, atol=0)


def test_gradcam_and_gradient_methods_on_vit_without_configuration(vit):
    x = torch.rand(2, 3, 32, 32)
    res = explain(vit, x, torch.tensor([1, 2]), ["gradcam", "gradcam_pp", "saliency", "attention_rollout"])
    assert res.layer == "encoder.layers.encoder_layer_1.ln_1"
    assert res.maps["gradcam"].shape == (2, 32, 32)
    assert res.maps["attention_rollout"].shape == (2, 32, 32)
    assert res.maps["saliency"].shape == x.shape
    for m in res.maps.values():
        assert torch.isfinite(m).all() and m.abs().sum() > 0
    skipped = explain(vit, x, 0, ["cam", "saliency"])
    assert set(skipped.maps) == {"saliency"} and "average-pooled" in skipped.skipped["cam"]
    with pytest.raises(ValueError, match="average-pooled"):
        attribute(vit, x, 0, ["cam"])
    assert live_hook_count(vit) == 0


def test_rollout_refuses_cnn():
    from audit.models.zoo import SmallCNN

    with pytest.raises(ValueError, match="VisionTransformer"):
        attention_rollout(SmallCNN(), torch.rand(1, 1, 32, 32))


def test_activation_maximization_raises_the_channel():
    from audit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    layer = model.features.block2.conv

    def act(img: torch.Tensor) -> float:
        out = {}
        h = layer.register_forward_hook(lambda m, i, o: out.setdefault("a", o))
        try:
            with torch.no_grad():
                model(img[None])
        finally:
            h.remove()
        return float(out["a"][0, 3].mean())

    img = activation_maximization(model, "features.block2.conv", 3, input_shape=(1, 32, 32), steps=40, lr=0.1, seed=0)
    again = activation_maximization(model, layer, 3, input_shape=(1, 32, 32), steps=40, lr=0.1, seed=0)
    assert img.shape == (1, 32, 32)
    torch.testing.assert_close(img, again)
    start = 0.01 * torch.randn((1, 1, 32, 32), generator=torch.Generator().manual_seed(0))[0]
    assert act(img) > act(start) + 0.1
    assert all(p.grad is None for p in model.parameters())
    assert live_hook_count(model) == 0
    with pytest.raises(ValueError, match="out of range"):
        activation_maximization(model, layer, 99, input_shape=(1, 32, 32), steps=1)


def test_torchvision_vit_gradient_perturbation_and_cam_family_methods():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.2)
    x = torch.rand(1, 3, 32, 32)
    methods = ["saliency", "integrated_gradients", "smoothgrad", "occlusion", "gradcam", "gradcam_pp", "cam"]
    res = explain(model, x, None, methods, ig_steps=32, sg_samples=4, occlusion_window=8, occlusion_stride=8)
    assert set(res.skipped) == {"cam"} and set(res.maps) == set(methods) - {"cam"}
    for name, m in res.maps.items():
        assert m.shape[-2:] == (32, 32) and torch.isfinite(m).all() and m.abs().sum() > 0, name
    # completeness of IG holds through the token pipeline
    assert float(res.info["integrated_gradients"].completeness_delta.abs().max()) < 1e-2
    assert live_hook_count(model) == 0
