"""Hugging Face image classifiers: registration from a directory, and the engine on a ViT's token grid."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from audit.attribution import explain, live_hook_count
from audit.attribution.hooks import capture_layer
from audit.models.loading import HFImageClassifier, ModelLoadError, load_hf_image_dir

transformers = pytest.importorskip("transformers")

LABELS = ["cat", "dog", "fox"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def make_vit_dir(path, *, processor: bool = True, safetensors: bool = True):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=3, id2label=dict(enumerate(LABELS)),
                    label2id={v: i for i, v in enumerate(LABELS)})
    model = ViTForImageClassification(cfg).eval()
    torch.nn.init.normal_(model.classifier.weight, std=0.5)  # a head that separates the classes
    model.save_pretrained(str(path), safe_serialization=True)
    if processor:
        ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD).save_pretrained(str(path))
    if not safetensors:
        from safetensors.torch import load_file

        for f in path.glob("*.safetensors"):
            torch.save(load_file(str(f)), str(path / "pytorch_model.bin"))
            f.unlink()
    return path


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return make_vit_dir(tmp_path_factory.mktemp("hf-vit"))


@pytest.fixture(scope="module")
def vit(vit_dir):
    return load_hf_image_dir(vit_dir)


def png_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_wrapper_returns_the_logits_and_keeps_layer_names(vit, vit_dir):
    from transformers import AutoModelForImageClassification

    ref = AutoModelForImageClassification.from_pretrained(str(vit_dir)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), ref(pixel_values=x).logits)
    assert isinstance(vit, HFImageClassifier)
    names = dict(vit.named_modules())
    assert any(n.startswith("model.vit.") and n.endswith(".1.layernorm_before") for n in names)


def test_register_hf_vit_takes_spec_and_labels_from_the_directory(audit_home, vit_dir):
    from audit.services.analyses.explanations.service import explain_image, stored_explanations
    from audit.services.core.registry import ModelSource, load_handle, register_version

    row = register_version(family="vit", version="1", task="image-classification",
                           source=ModelSource("hf", vit_dir), labels=None)
    assert row["format"] == "hf" and row["architecture"] == "ViTForImageClassification"
    assert row["labels"] == LABELS
    # with the processor's own resampler (torchvision's tensor kernels) and crop rule
    assert row["input_spec"] == {"channels": 3, "height": 32, "width": 32, "mean": MEAN, "std": STD,
                                 "backend": "tensor", "crop_origin": "floor"}
    assert row["target_layer"].startswith("model.vit.") and row["target_layer"].endswith(".1.layernorm_before")
    manifest_files = {"config.json", "model.safetensors", "preprocessor_config.json"}
    from storage.artifacts import ArtifactStore

    assert set(json.loads(ArtifactStore().get_bytes(row["sha256"]))) == manifest_files

    handle = load_handle("vit", "1", device="cpu")
    assert handle.input_spec.to_dict() == row["input_spec"] and handle.target_layer == row["target_layer"]
    exp = explain_image("vit", "1", methods=["saliency", "integrated_gradients", "gradcam"],
                        image_bytes=png_bytes(), options={"ig_steps": 4})
    assert exp.skipped == {}
    assert exp.maps["saliency"].attribution.shape == (3, 32, 32)
    assert exp.maps["integrated_gradients"].attribution.shape == (3, 32, 32)
    assert exp.maps["gradcam"].attribution.shape == (32, 32)
    for sm in exp.maps.values():
        assert np.isfinite(sm.attribution).all() and np.abs(sm.attribution).sum() > 0
    assert len(stored_explanations("vit", "1")) == 3
    assert live_hook_count(handle.module) == 0


def test_cli_registers_hf_image_dir_and_flags_give_the_spec_without_preprocessor(audit_home, tmp_path, capsys):
    from audit.cli import main
    from audit.services.core.registry import get_version

    assert main(["register", "--family", "vit", "--version", "1", "--task", "image-classification",
                 "--hf-dir", str(make_vit_dir(tmp_path / "a"))]) == 0
    assert get_version("vit", "1")["input_spec"]["mean"] == MEAN

    bare = make_vit_dir(tmp_path / "b", processor=False)
    capsys.readouterr()
    assert main(["register", "--family", "vit", "--version", "2", "--task", "image-classification",
                 "--hf-dir", str(bare)]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert main(["register", "--family", "vit", "--version", "2", "--task", "image-classification",
                 "--hf-dir", str(bare), "--input-size", "3,32,32", "--mean", "0.5", "--std", "0.5"]) == 0
    info = get_version("vit", "2")
    assert info["input_spec"] == {"channels": 3, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]}
    assert info["labels"] == LABELS


def test_hf_image_dir_without_safetensors_or_spec_is_refused(audit_home, tmp_path):
    from audit.models.handle import build_handle
    from audit.services.core.registry import ModelSource, list_models, register_version

    no_st = make_vit_dir(tmp_path / "bin", safetensors=False)
    assert (no_st / "pytorch_model.bin").is_file()
    with pytest.raises(ModelLoadError, match="no .safetensors weights"):
        register_version(family="vit", version="1", task="image-classification",
                         source=ModelSource("hf", no_st), labels=None)
    with pytest.raises(ModelLoadError, match="preprocessor_config.json"):
        build_handle(task="image-classification", fmt="hf", labels=LABELS, sha256="x",
                     path=make_vit_dir(tmp_path / "bare", processor=False))
    assert list_models() == []


def test_gradcam_on_hf_vit_equals_hand_computation_on_token_grid(vit):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([0, 2])
    res = explain(vit, x, targets, ["gradcam"])
    layer = dict(vit.named_modules())[res.layer]
    assert res.layer.endswith(".1.layernorm_before")

    # Independent oracle: a plain hook, retain_grad, then the Grad-CAM formula on the patch grid.
    seen = {}

    def hook(_m, _i, out):
        out.retain_grad()
        seen["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        vit.zero_grad()
        logits = vit(x.clone().requires_grad_(True))
        logits[torch.arange(2), targets].sum().backward()
    finally:
        handle.remove()
    acts, grads = seen["a"][:, 1:, :], seen["a"].grad[:, 1:, :]  # drop the class token: [B, 16, D]
    assert acts.shape == (2, 16, 32)
    weights = grads.mean(dim=1)  # [B, D]: gradients averaged over the 4 x 4 patch grid
    cam = torch.relu((acts * weights[:, None, :]).sum(-1)).reshape(2, 1, 4, 4)
    expected = F.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert expected.abs().sum() > 0
    torch.testing.assert_close(res.maps["gradcam"], expected.detach(), rtol=1e-4, atol=1e-6)
    assert live_hook_count(vit) == 0


def test_gradient_perturbation_and_cam_family_methods_on_hf_vit(vit):
    x = torch.randn(1, 3, 32, 32)
    res = explain(vit, x, None, ["saliency", "grad_x_input", "gradcam", "gradcam_pp", "occlusion", "cam"],
                  occlusion_window=8, occlusion_stride=8)
    assert set(res.maps) == {"saliency", "grad_x_input", "gradcam", "gradcam_pp", "occlusion"}
    assert "average-pooled" in res.skipped["cam"]
    assert res.maps["gradcam_pp"].shape == (1, 32, 32) and res.maps["occlusion"].shape[-2:] == (32, 32)
    for m in res.maps.values():
        assert torch.isfinite(m).all() and m.abs().sum() > 0


def test_capture_layer_reads_a_block_that_returns_a_tuple():
    class Block(torch.nn.Module):  # the shape of a transformers-4 ViTLayer: (hidden_states, attentions)
        def forward(self, h):
            return h * 2, None

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, h):
            return self.block(h)[0].sum(-1)

    net = Net()
    h = torch.randn(2, 5, 3)
    with capture_layer(net.block) as rec:
        out = net(h)
    torch.testing.assert_close(rec.output, h * 2)
    torch.testing.assert_close(out, (h * 2).sum(-1))
    assert live_hook_count(net) == 0


def test_attention_rollout_on_hf_vit_matches_attention_recomputed_from_the_projections(vit):
    from audit.attribution import attention_rollout

    torch.manual_seed(2)
    x = torch.randn(2, 3, 32, 32)
    blocks = [m for n, m in vit.named_modules() if n.endswith("layernorm_before")]
    attns = [m for n, m in vit.named_modules() if n.endswith(".attention") and hasattr(m, "q_proj")]
    if len(attns) != len(blocks):
        pytest.skip("this transformers release names the attention projections differently")
    normed = []
    handles = [b.register_forward_hook(lambda _m, _i, out: normed.append(out.detach())) for b in blocks]
    try:
        with torch.no_grad():
            vit(x)
    finally:
        for h in handles:
            h.remove()
    heads, eye, roll = 2, torch.eye(17), None
    for h, att in zip(normed, attns):  # softmax(q k^T / sqrt(d)) per head, heads averaged, rollout
        q = att.q_proj(h).view(2, 17, heads, -1).transpose(1, 2)
        k = att.k_proj(h).view(2, 17, heads, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1).mean(1) + eye
        a = a / a.sum(-1, keepdim=True)
        roll = a if roll is None else a @ roll
    grid = roll[:, 0, 1:].reshape(2, 1, 4, 4)
    expected = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(attention_rollout(vit, x), expected, rtol=1e-4, atol=1e-6)
    res = explain(vit, x, None, ["attention_rollout", "gradcam"])
    assert res.skipped == {} and res.maps["attention_rollout"].shape == (2, 32, 32)
    assert vit.config._attn_implementation == "eager" and live_hook_count(vit) == 0


def test_rollout_switches_sdpa_to_eager_for_the_call_only(vit, vit_dir):
    from transformers import AutoModelForImageClassification

    from audit.attribution import attention_rollout

    sdpa = HFImageClassifier(AutoModelForImageClassification.from_pretrained(
        str(vit_dir), attn_implementation="sdpa").eval())
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(attention_rollout(sdpa, x), attention_rollout(vit, x))
    assert sdpa.config._attn_implementation == "sdpa" and live_hook_count(sdpa) == 0


def _tiny_hf(kind: str) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    if kind == "swin":
        return tf.SwinForImageClassification(tf.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3))
    if kind == "convnext":
        return tf.ConvNextForImageClassification(tf.ConvNextConfig(
            hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3))
    return tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3))


@pytest.mark.parametrize("kind, layer_suffix, rollout", [
    ("swin", "encoder.layers.1.blocks.0.layernorm_before", False),  # last stage; windowed attention
    ("convnext", "encoder.stages.1", False),  # a CNN: the last feature map
    ("deit", "layers.1.layernorm_before", True),  # class and distillation tokens dropped from the grid
])
def test_other_hf_image_architectures_get_their_layer_and_skips(kind, layer_suffix, rollout):
    model = HFImageClassifier(_tiny_hf(kind).eval())
    res = explain(model, torch.randn(1, 3, 32, 32), None, ["saliency", "gradcam", "cam", "attention_rollout"])
    assert res.layer.endswith(layer_suffix)
    assert "cam" in res.skipped and ("attention_rollout" in res.maps) == rollout
    assert res.maps["gradcam"].shape == (1, 32, 32) and res.maps["gradcam"].abs().sum() > 0
    assert live_hook_count(model) == 0
