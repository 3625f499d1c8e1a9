"""Real browser: sign in, browse the registry, explain a demo sample, and role limits for viewers."""

from __future__ import annotations

import time

from .serving import open_page

TITLES = {"Explain": "Explain a prediction", "Concept tests": "Concept tests (TCAV)", "Reports": "Compliance reports"}


def _open(page, link: str) -> None:
    # Wait for this page's own title: any heading would also match the page the click left, and a click that
    # lands during a rerun is clicked again.
    open_page(page, link, TITLES[link])


def test_login_and_browse_registry(page, login):
    start = time.perf_counter()
    login("auditor")
    page.get_by_text("digits-cnn").first.wait_for()
    page.get_by_text("loan-notes-minilm").first.wait_for()
    page.get_by_text("Lineage", exact=False).first.wait_for()
    print(f"e2e registry: {time.perf_counter() - start:.1f} s")


def test_wrong_password_is_refused(page, app_url):
    page.goto(app_url)
    page.get_by_role("textbox", name="Username").fill("ann")
    page.get_by_role("textbox", name="Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("unknown user or wrong password").wait_for()


def test_gradcam_on_a_demo_sample_shows_a_heatmap(page, login):
    login("auditor")
    _open(page, "Explain")
    page.get_by_role("button", name="Explain").click()
    page.get_by_text("Attributions for class").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()
    assert page.locator(".js-plotly-plot").count() >= 2
    assert page.get_by_text("gradcam").count() >= 1


def test_viewer_cannot_run_an_audit(page, login):
    login("viewer")
    _open(page, "Explain")
    page.get_by_role("button", name="Explain").click()
    page.get_by_text("may view stored results but not run").wait_for()


def test_concept_test_runs_in_the_browser(page, login):
    login("auditor")
    _open(page, "Concept tests")
    page.get_by_role("button", name="Run concept test").click()
    page.get_by_text("random runs", exact=False).first.wait_for(timeout=600_000)
    page.get_by_text("watermark").first.wait_for()  # the examples render after the heading
    assert page.get_by_text("watermark").count() >= 1
    page.locator(".js-plotly-plot").first.wait_for()


def test_generate_and_download_a_report(page, login, tmp_path):
    login("auditor")
    _open(page, "Reports")
    page.get_by_role("button", name="Generate report").click()
    button = page.get_by_role("button", name="Download PDF").first
    button.wait_for(timeout=900_000)
    with page.expect_download() as info:
        button.click()
    target = tmp_path / "report.pdf"
    info.value.save_as(target)
    data = target.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 10_000
