"""AppTest of the Drift page on the tiny registry: trend lines, flags and the side-by-side gallery."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from audit.services.analyses.drift.views import drift_trend

ROOT = Path(__file__).resolve().parents[2]


def _page(role: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/drift.py"), default_timeout=180)
    at.session_state["principal"] = Principal("tester", role)
    return at


def test_page_shows_stored_trend_flags_and_gallery(tiny_family):
    drift_trend("tiny", limit=6, methods=["saliency", "gradcam"], options={"ig_steps": 8, "seed": 0})
    at = _page("viewer").run()
    assert not at.exception, at.exception
    assert any("Your role shows stored drift results" in c.value for c in at.caption)
    assert len(at.dataframe) >= 2
    assert at.error and "Drift flagged" in at.error[0].value  # the newest pair (2 → 3) is selected
    charts = at.get("plotly_chart")
    assert len(charts) >= 2 + 4  # two trend charts and four gallery pairs
    at.selectbox[2].set_value(0).run()  # pair 1 → 2: identical weights
    assert not at.exception and at.success and "No drift flagged" in at.success[0].value


def test_page_without_results_says_so(tiny_family):
    at = _page("auditor").run()
    assert not at.exception
    assert any("No drift has been computed" in i.value for i in at.info)
