"""AppTest of the Registry page on the demo registry, and of the sign-in gate."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal

ROOT = Path(__file__).resolve().parents[2]


def _page(path: str, role: str = "admin") -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.session_state["principal"] = Principal("tester", role)
    return at


def test_registry_page_shows_demo_families(in_demo):
    at = _page("pages/registry.py").run()
    assert not at.exception
    subheaders = [s.value for s in at.subheader]
    assert "digits-cnn" in subheaders and "loan-notes-minilm" in subheaders
    assert any("1 → 2" in m.value for m in at.markdown)
    assert "Register a new version" in subheaders


def test_viewer_sees_no_register_form(in_demo):
    at = _page("pages/registry.py", role="viewer").run()
    assert not at.exception
    assert any("Only administrators" in c.value for c in at.caption)


def test_app_asks_for_sign_in(in_demo):
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.text_input and at.button[0].label == "Sign in"
