"""Methods that do not apply to a model are skipped with their reason; the others still run and are stored."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from audit.attribution import MethodNotApplicable, attribute, explain
from audit.services.analyses.explanations.service import ExplainError, explain_batch, explain_image, stored_explanations
from audit.services.core.registry import ModelSource, load_handle, register_version

LABELS = ["a", "b", "c"]
SPEC = {"channels": 3, "height": 64, "width": 64, "mean": [0.5], "std": [0.25]}


def mobilenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=3).eval()


@pytest.fixture()
def mobilenet_registry(audit_home, tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(mobilenet().state_dict(), str(path))
    register_version(family="mnet", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "mobilenet_v3_small", {"num_classes": 3}),
                     labels=LABELS, input_spec=SPEC)
    return audit_home


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_engine_skips_cam_on_mobilenet_and_runs_the_rest():
    model = mobilenet()
    x = torch.randn(2, 3, 64, 64)
    res = explain(model, x, None, ["cam", "gradcam", "saliency"])
    assert set(res.maps) == {"gradcam", "saliency"} and set(res.info) == {"gradcam", "saliency"}
    assert set(res.skipped) == {"cam"} and "average-pooled" in res.skipped["cam"]
    assert res.maps["gradcam"].shape == (2, 64, 64) and res.maps["saliency"].shape == x.shape
    # The public attribute() promises a map per requested method, so it still refuses.
    with pytest.raises(MethodNotApplicable, match="cam: .*average-pooled"):
        attribute(model, x, 0, ["cam", "gradcam"])


def test_attention_rollout_is_skipped_on_a_cnn_before_any_forward():
    res = explain(mobilenet(), torch.randn(1, 3, 64, 64), 0, ["attention_rollout", "saliency"])
    assert set(res.maps) == {"saliency"} and "VisionTransformer" in res.skipped["attention_rollout"]


def test_explain_image_returns_maps_and_reasons_and_stores_only_computed(mobilenet_registry):
    exp = explain_image("mnet", "1", methods=["cam", "gradcam", "saliency"], image_bytes=png_bytes())
    assert set(exp.maps) == {"gradcam", "saliency"}
    assert set(exp.skipped) == {"cam"} and "average-pooled" in exp.skipped["cam"]
    assert exp.maps["gradcam"].attribution.shape == (64, 64)
    assert exp.maps["saliency"].attribution.shape == (3, 64, 64)
    assert sorted(r["method"] for r in stored_explanations("mnet", "1")) == ["gradcam", "saliency"]
    again = explain_image("mnet", "1", methods=["cam", "gradcam", "saliency"], image_bytes=png_bytes())
    assert all(sm.cached for sm in again.maps.values()) and set(again.skipped) == {"cam"}
    assert len(stored_explanations("mnet", "1")) == 2


def test_explain_batch_keeps_refusing_for_callers_that_need_every_map(mobilenet_registry):
    from audit.services.governance.principals import SYSTEM

    handle = load_handle("mnet", "1", device="cpu")
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ExplainError, match="cam: .*average-pooled"):
        explain_batch(handle, "mnet", "1", x, ["0" * 64], [0], ["cam", "saliency"], {}, sample_ids=[None],
                      actor=SYSTEM, progress=None)


def test_explain_page_shows_the_reason_beside_the_grid(mobilenet_registry):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from audit.services.governance.principals import Principal
    from audit.services.core.datasets import add_image_dataset

    add_image_dataset("ref", torch.rand(2, 3, 64, 64), [0, 1], [{}] * 2, label_names=LABELS)
    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "pages/explain.py"), default_timeout=240)
    at.session_state["principal"] = Principal("tester", "auditor")
    at.run()
    assert not at.exception, at.exception
    at.multiselect[0].set_value(["cam", "saliency"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any(i.value.startswith("cam skipped:") and "average-pooled" in i.value for i in at.info)
