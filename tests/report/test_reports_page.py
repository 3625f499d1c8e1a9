"""AppTest of the Reports page: stored reports listed with findings and a download, sign-off form."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import generate_report, list_reports

ROOT = Path(__file__).resolve().parents[2]


def _page(role: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/reports.py"), default_timeout=180)
    at.session_state["principal"] = Principal("tester", role)
    return at


def test_viewer_reads_but_cannot_generate_or_sign(tiny_reports):
    generate_report("tiny", "2", compute_missing=False)
    at = _page("viewer").run()
    assert not at.exception, at.exception
    assert any("Your role may read and download" in c.value for c in at.caption)
    assert at.button[0].disabled  # the Generate button
    assert len(at.get("download_button")) == 1
    assert not [b for b in at.button if b.label == "Sign off"]


def test_auditor_signs_off_on_the_page(tiny_reports):
    info = generate_report("tiny", "2", compute_missing=False)
    at = _page("auditor").run()
    assert not at.exception
    assert any(f"Report {info['id']}" in e.label for e in at.expander)
    at.radio[0].set_value("rejected")
    at.text_area[0].input("the bias gap is too large")
    next(b for b in at.button if b.label == "Sign off").click().run()
    assert not at.exception
    assert get_version("tiny", "2")["status"] == "rejected"
    assert list_reports(family="tiny", version="2")[0]["signoff"]["reason"] == "the bias gap is too large"
    assert any("Signed (rejected)" in i.value for i in at.info)


def test_the_author_gets_no_sign_form_and_another_auditor_does(tiny_reports):
    generate_report("tiny", "2", compute_missing=False, actor=Principal("tester", "auditor"))
    at = _page("auditor").run()  # the page's principal is "tester": the report's generator
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.label == "Sign off"]
    assert any("You generated this report" in c.value for c in at.caption)
    other = AppTest.from_file(str(ROOT / "pages/reports.py"), default_timeout=180)
    other.session_state["principal"] = Principal("someone-else", "auditor")
    other.run()
    assert [b for b in other.button if b.label == "Sign off"]
