"""The Jobs page and the Reports page's job submission, with Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.jobs import queue as J
from audit.services.governance.principals import Principal
from audit.services.jobs.worker import Worker

PAGES = Path(__file__).resolve().parents[2] / "pages"
AUDITOR = Principal("ann", "auditor")


def _page(name: str, principal: Principal) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=120)
    at.session_state["principal"] = principal
    at.run()
    assert not at.exception, at.exception
    return at


def _labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def _elements(node, kind: str) -> list:  # noqa: ANN001 - an AppTest element tree
    found = [node] if getattr(node, "type", None) == kind else []
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else []):
        found += _elements(child, kind)
    return found


def test_jobs_page_offers_actions_by_permission(queue_home):
    queued = J.submit_job("explain", {"family": "tiny", "version": "1", "dataset": "ref", "methods": ["saliency"]},
                          actor=AUDITOR)
    assert _labels(_page("jobs.py", AUDITOR)) == ["Cancel"]
    assert _labels(_page("jobs.py", Principal("vic", "viewer"))) == []  # viewers read only
    assert _labels(_page("jobs.py", Principal("bob", "auditor"))) == []  # not bob's job

    at = _page("jobs.py", AUDITOR)
    at.button[0].click().run()
    assert J.get_job(queued.id).status == "cancelled"
    assert _labels(at) == ["Retry"]


def test_jobs_page_offers_the_pdf_of_a_finished_report(queue_home):
    from audit.services.governance.auth import create_user

    create_user(AUDITOR.username, "a-long-password-1", AUDITOR.role)  # a job runs with its submitter's account
    J.submit_job("report", {"family": "tiny", "version": "1", "compute_missing": False}, actor=AUDITOR)
    Worker(lease_s=10).run(once=True)
    assert J.list_jobs()[0].status == "done", J.list_jobs()[0].error
    at = _page("jobs.py", Principal("vic", "viewer"))
    assert [d.proto.label for d in _elements(at.main, "download_button")] == ["Download PDF"]
    assert any("report 1 stored" in s.value for s in at.success)


def test_reports_page_queues_the_report_instead_of_computing_it(queue_home):
    at = _page("reports.py", AUDITOR)
    [go] = [b for b in at.button if b.label == "Generate report"]
    go.click().run()
    assert not at.exception, at.exception
    [job] = J.list_jobs()
    assert (job.kind, job.status, job.submitted_by) == ("report", "queued", "ann")
    assert job.parameters["family"] == "tiny" and job.parameters["compute_missing"] is True
    from audit.services.analyses.reports.service import list_reports

    assert list_reports(family="tiny", version="1") == []  # nothing computed in the page
