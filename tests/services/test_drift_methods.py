"""The methods a drift check offers are those whose class says they apply to the family's models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision

from audit.attribution import METHODS
from audit.services import drift
from audit.services.drift import DEFAULT_IMAGE_METHODS, DEFAULT_TEXT_METHODS, available_methods


def test_a_cnn_family_is_offered_every_method_but_attention_rollout(register_small_cnn):
    register_small_cnn(version="1", seed=0)
    register_small_cnn(version="2", seed=1)
    got = available_methods("image-classification", family="tiny", versions=["1", "2"])
    assert got["methods"] == [m for m in METHODS if m != "attention_rollout"]
    assert got["default"] == list(DEFAULT_IMAGE_METHODS)


def test_a_vision_transformer_family_is_offered_attention_rollout_and_not_the_cam_layer_methods(monkeypatch):
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=3).eval()
    monkeypatch.setattr(drift, "handle_for", lambda family, version: SimpleNamespace(module=vit))
    got = available_methods("image-classification", family="vits", versions=["1", "2"])
    assert "attention_rollout" in got["methods"]
    assert "cam" not in got["methods"]  # no global-average-pooled feature maps in a ViT
    assert set(got["default"]) <= set(got["methods"])


def test_without_a_family_every_method_is_listed_and_texts_get_the_text_methods():
    from audit.text import TEXT_METHODS

    assert available_methods("image-classification")["methods"] == list(METHODS)
    assert available_methods("text-classification") == {"methods": list(TEXT_METHODS),
                                                         "default": list(DEFAULT_TEXT_METHODS)}


def test_a_method_that_does_not_apply_stops_the_check_with_its_reason(register_small_cnn, tmp_path):
    from audit.services.datasets import add_image_dataset

    register_small_cnn(version="1", seed=0)
    register_small_cnn(version="2", seed=1)
    add_image_dataset("ref", torch.rand(4, 1, 32, 32), [0, 1, 2, 3], [{}] * 4,
                      label_names=[str(i) for i in range(10)])
    with pytest.raises(drift.DriftError, match="vision transformer"):
        drift.compute_drift("tiny", "1", "2", dataset="ref", methods=["attention_rollout"], limit=2)
