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


def _register_tiny(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]})


@pytest.fixture()
def tiny(audit_home, tmp_path):
    _register_tiny(tmp_path)
    add_image_dataset("ref", torch.rand(4, 1, 32, 32), [1, 2, 3, 4], [{}] * 4, label_names=LABELS)
    return audit_home


@pytest.fixture()
def boxed(audit_home, tmp_path):
    """The tiny model, and 64x64 reference images (the model sees 32x32) of which two declare a box."""
    _register_tiny(tmp_path)
    add_image_dataset("boxed", torch.rand(3, 1, 64, 64), [1, 2, 3], [{"site": "a"}] * 3, label_names=LABELS,
                      regions=[[8, 16, 40, 48], None, [0, 0, 64, 64]])
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
    # The Provenance tab says what each stored map was computed on, from its row.
    from audit.services.explain import stored_explanations
    from audit.services.explain_views import describe_engine

    provenance = next(d.value for d in at.dataframe if "computed on" in d.value.columns)
    rows = {r["id"]: r for r in stored_explanations("tiny", "1")}
    assert len(provenance) == 3
    for _, shown in provenance.iterrows():
        row = rows[shown["explanation id"]]
        assert row["engine"] and shown["computed on"] == describe_engine(row["engine"]), (shown, row["engine"])


def test_viewer_cannot_run_an_explanation(tiny):
    at = _page("viewer").run()
    at.button[0].click().run()
    assert any("may view stored results" in e.value for e in at.error)


def test_declared_region_is_shown_and_localisation_matches_the_engine(boxed):
    from audit.quality import localisation

    at = _page("auditor").run()
    assert not at.exception, at.exception
    captions = [img.caption for node in at.get("image") for img in node.proto.imgs]
    # the page shows the image as the model sees it (64x64 stored, resized to 32x32) and the box moved with it
    assert captions == ["boxed-0000 · label 1 · groups {'site': 'a'} · declared region [4, 8, 20, 24] (red)"]
    at.multiselect[0].set_value(["saliency", "gradcam"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any(s.value == "Localisation (declared region)" for s in at.subheader)
    table = next(d.value for d in at.dataframe if "relevance mass" in d.value.columns)
    exp = at.session_state["explanation"]
    # the stored box [8, 16, 40, 48] on 64x64 pixels is [4, 8, 20, 24] on the 32x32 maps
    for method, label in (("saliency", "Saliency"), ("gradcam", "Grad-CAM")):
        want = localisation(torch.from_numpy(exp.maps[method].attribution).unsqueeze(0), [[4, 8, 20, 24]])
        row = table[table["method"] == label].iloc[0]
        assert row["relevance mass"] == pytest.approx(want.relevance_mass_mean, abs=1e-9)
        assert row["pointing game"] == want.pointing_game_mean
        assert 0.0 < row["relevance mass"] < 1.0


def test_no_localisation_table_without_a_declared_region(tiny):
    at = _page("auditor").run()
    at.multiselect[0].set_value(["saliency"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not any(s.value == "Localisation (declared region)" for s in at.subheader)


def test_the_method_list_is_the_registry_with_the_names_people_use(tiny):
    from audit.attribution.registry import registered

    at = _page("auditor").run()
    assert not at.exception, at.exception
    box = at.multiselect[0]
    assert list(box.options) == [cls.label for cls in registered().values()]
    assert box.value == ["saliency", "grad_x_input", "integrated_gradients", "gradcam"]
    assert [n.value for n in at.number_input] == [50, 25, 0, 8]  # IG steps, SmoothGrad samples, seed, window
