"""AppTest of the Text page: methods named as people say them, and each map shown with the options it
was actually computed with (a pad map is never labelled mask)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal

ROOT = Path(__file__).resolve().parents[2]


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "text.py"), default_timeout=300)
    at.session_state["principal"] = Principal("tester", "auditor")
    return at


def _widget(items, label):
    return next(w for w in items if w.label == label)


def _map_headers(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**")]


def test_text_page_names_methods_and_shows_the_baseline_of_each_map(tiny_text):
    at = _page().run()
    assert not at.exception
    methods = _widget(at.multiselect, "Methods")
    assert "Integrated Gradients" in methods.options and "integrated_gradients" not in methods.options
    methods.set_value(["integrated_gradients", "occlusion"])
    _widget(at.number_input, "IG steps").set_value(8)
    _widget(at.button, "Explain").click().run()
    assert not at.exception, at.exception
    headers = _map_headers(at)
    assert any(h.startswith("**Integrated Gradients** · baseline pad · steps 8") for h in headers), headers
    assert any(h.startswith("**Occlusion (leave one out)** · replacement remove") for h in headers), headers
    pad_ig = at.session_state["text_exp"]["scores"]["integrated_gradients"]

    _widget(at.selectbox, "IG baseline").set_value("mask")
    _widget(at.button, "Explain").click().run()
    assert not at.exception, at.exception
    ig = [h for h in _map_headers(at) if h.startswith("**Integrated Gradients**")]
    assert len(ig) == 1 and "baseline mask" in ig[0] and "from the store" not in ig[0], ig
    assert at.session_state["text_exp"]["scores"]["integrated_gradients"] != pad_ig

    # Changing the form without running keeps showing the map that was computed, with its own baseline.
    _widget(at.selectbox, "IG baseline").set_value("zero").run()
    ig = [h for h in _map_headers(at) if h.startswith("**Integrated Gradients**")]
    assert "baseline mask" in ig[0], ig

    _widget(at.selectbox, "IG baseline").set_value("pad")
    _widget(at.button, "Explain").click().run()
    ig = [h for h in _map_headers(at) if h.startswith("**Integrated Gradients**")]
    assert "baseline pad" in ig[0] and "from the store" in ig[0], ig
    assert at.session_state["text_exp"]["scores"]["integrated_gradients"] == pad_ig
