"""Default concept-test layers on architectures the project did not write: the last two blocks of the main
stack, never the classifier head (which would test concepts on the logits)."""

from __future__ import annotations

import json

import torch


def _register_torchvision(tmp_path, arch: str, kwargs: dict, size: int) -> None:
    import torchvision
    from safetensors.torch import save_file

    from audit.services.registry import ModelSource, register_version

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(**kwargs)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    register_version(family=arch, version="1", task="image-classification",
                     source=ModelSource("state_dict", path, arch, kwargs), labels=["a", "b", "c"],
                     input_spec={"channels": 3, "height": size, "width": size, "mean": [0.5] * 3, "std": [0.25] * 3})


def test_mobilenet_v3_gets_its_last_two_feature_stages(audit_home, tmp_path):
    from audit.services.concepts import default_layers

    _register_torchvision(tmp_path, "mobilenet_v3_small", {"num_classes": 3, "width_mult": 0.5}, 64)
    assert default_layers("mobilenet_v3_small", "1") == ["features.11", "features.12"]


def test_squeezenet_skips_stages_without_parameters(audit_home, tmp_path):
    from audit.services.concepts import default_layers

    _register_torchvision(tmp_path, "squeezenet1_1", {"num_classes": 3}, 64)
    # features.12 is a Fire module, features.11 too; the ReLUs and max-pools in between hold no parameters
    assert default_layers("squeezenet1_1", "1") == ["features.11", "features.12"]


def test_hf_vit_gets_its_last_two_encoder_blocks(audit_home, tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    from audit.services.concepts import default_layers
    from audit.services.handles import handle_for
    from audit.services.registry import ModelSource, register_version

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
