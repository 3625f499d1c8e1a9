"""End-to-end fixtures: the app served by Streamlit on the loopback address, driven by headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.serving import ROOT, need_chromium, serve_app

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
USERS = {"auditor": ("ann", "auditor-pass-123"), "viewer": ("vic", "viewer-pass-123"), "admin": ("ada", "admin-pass-123"),
         "auditor2": ("bob", "auditor2-pass-123")}  # a second auditor: four-eyes sign-off


@pytest.fixture(scope="session")
def app_url(demo_home: Path):
    need_chromium()
    from audit.services.governance.auth import create_user

    for role, (name, password) in USERS.items():
        create_user(name, password, role.rstrip("0123456789"))
    with serve_app(demo_home) as url:
        yield url


@pytest.fixture()
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        # CI keeps only the console: show what the page said when the test gave up.
        try:
            print("--- page text at failure ---\n" + pg.inner_text("body", timeout=5000)[-4000:])
        except Exception as exc:  # noqa: BLE001 - diagnostics only, the test has already failed
            print(f"(page text unavailable: {exc})")
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001 - pytest hook
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


@pytest.fixture()
def login(page, app_url):
    """Sign in through the form as the given role."""
    return lambda role: _login(page, app_url, role)


def _login(page, url: str, role: str) -> None:
    name, password = USERS[role]
    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as").wait_for()
