"""AppTest of the Explain page: run methods on a reference sample and see the heat-map grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from audit.models.zoo import SmallCNN
from audit.services.auth import Principal
from audit.services.datasets import add_image_dataset
from audit.services.registry import ModelSource, register_version

ROOT = Path(__file__).resolve().parents[2]
LABELS = [str(i) for i in range(10)]


@pytest.fixture()
def tiny(audit_home, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]})
    add_image_dataset("ref", torch.rand(4, 1, 32, 32), [1, 2, 3, 4], [{}] * 4, label_names=LABELS)
    return audit_home


def _page(role: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/explain.py"), default_timeout=240)
    at.session_state["principal"] = Principal("tester", role)
    return at


def test_explain_page_shows_heatmaps_and_curves(tiny):
    at = _page("auditor").run()
    assert not at.exception
    at.multiselect[0].set_value(["saliency", "gradcam", "occlusion"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # top-k bar, heat-map grid, deletion and insertion curves
    assert any(m.label == "Predicted" for m in at.metric)
    # The same request again comes from the store.
    at.button[0].click().run()
    assert any("Returned from the store" in c.value for c in at.caption)


def test_viewer_cannot_run_an_explanation(tiny):
    at = _page("viewer").run()
    at.button[0].click().run()
    assert any("may view stored results" in e.value for e in at.error)
