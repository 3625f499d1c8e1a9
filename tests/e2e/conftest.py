"""End-to-end fixtures: the app served by Streamlit on the loopback address, driven by headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
USERS = {"auditor": ("ann", "auditor-pass-123"), "viewer": ("vic", "viewer-pass-123"), "admin": ("ada", "admin-pass-123"),
         "auditor2": ("bob", "auditor2-pass-123")}  # a second auditor: four-eyes sign-off


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(demo_home):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    from audit.services.auth import create_user

    for role, (name, password) in USERS.items():
        create_user(name, password, role.rstrip("0123456789"))
    port = _free_port()
    env = dict(os.environ, AUDIT_HOME=str(demo_home), PYTHONPATH=str(ROOT))
    log = open(demo_home / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    # The pages queue reports and full audits as jobs: run a worker beside the app, as `make run` does.
    worker = subprocess.Popen([sys.executable, "-m", "audit", "worker"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        worker.terminate()
        pytest.fail("the Streamlit server did not start: " + (demo_home / "streamlit.log").read_text()[-2000:])
    yield url
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


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
