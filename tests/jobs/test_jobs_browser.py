"""In the browser: queue a report on the Reports page, leave for the Jobs page by clicking, come back and
download the PDF the worker produced. The app and one worker run on a tiny registry of their own."""

from __future__ import annotations

import pytest

from tests.e2e.serving import need_chromium, open_page, serve_app
from tests.jobs.helpers import ROOT, log_actions, worker_env

USER = ("ann", "auditor-pass-123")


@pytest.fixture()
def app_with_worker(queue_home):
    need_chromium()
    from audit.services.governance.auth import create_user

    create_user(USER[0], USER[1], "auditor")
    with serve_app(queue_home, env=worker_env(queue_home), worker_args=("--poll", "0.2")) as url:
        yield url


@pytest.fixture()
def page(browser, app_with_worker):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    artifacts = ROOT / "test-artifacts" / "jobs"
    artifacts.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(artifacts / "report_job.png"), full_page=True)
    ctx.close()


def test_report_job_survives_leaving_the_page(page, app_with_worker, queue_home, tmp_path):
    from audit.services.jobs.queue import list_jobs

    page.goto(app_with_worker)
    page.get_by_role("textbox", name="Username").fill(USER[0])
    page.get_by_role("textbox", name="Password").fill(USER[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()

    open_page(page, "Reports", "Compliance reports")
    page.get_by_role("button", name="Generate report").click()
    page.get_by_text("Job #1 (compliance report", exact=False).first.wait_for()  # queued or running, live

    open_page(page, "Jobs", "Jobs")  # leave the page that started it
    page.get_by_text("#1 · Compliance report").first.wait_for()
    assert page.get_by_text("Job #1 (compliance report", exact=False).count() == 0

    open_page(page, "Reports", "Compliance reports")  # come back
    button = page.get_by_role("button", name="Download PDF").first
    button.wait_for(timeout=300_000)
    with page.expect_download() as info:
        button.click()
    target = tmp_path / "report.pdf"
    info.value.save_as(target)
    data = target.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 10_000

    [job] = list_jobs()
    assert (job.kind, job.status, job.submitted_by) == ("report", "done", USER[0])
    starts = [(a, d) for a, subject, d in log_actions("job.start") if subject == "job/1"]
    assert len(starts) == 1  # the worker ran it, once, not the page
    import hashlib

    assert hashlib.sha256(data).hexdigest() == job.result["sha256"]
