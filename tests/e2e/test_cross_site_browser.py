"""Cross-site WebSocket hijacking replayed in Chromium (issue 22, hole 1): a user signs in to the app, then opens a
page served from another port of the same host that tries to open the app's session stream; the browser would
send the HttpOnly cookie with it, so the server must refuse the handshake. The app itself keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.serving import free_port, need_chromium, serve_app

PASSWORD = "auditor-pass-123"


@pytest.fixture()
def signed_in_app(audit_home: Path):
    need_chromium()
    from audit.services.governance.auth import create_user

    create_user("ann", PASSWORD, "auditor")
    with serve_app(audit_home) as url:
        yield url


@pytest.fixture()
def foreign_page(tmp_path: Path, signed_in_app: str):
    """A page on another port of the loopback host that opens the app's stream and says whether it opened."""
    port = int(signed_in_app.rsplit(":", 1)[1])
    (tmp_path / "index.html").write_text(
        "<html><body><script>"
        f"const ws = new WebSocket('ws://127.0.0.1:{port}/_stcore/stream', ['streamlit']);"
        "ws.onopen = () => { document.title = 'opened'; };"
        "ws.onerror = () => { document.title = 'refused'; };"
        "</script></body></html>")
    other = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(other), "--bind", "127.0.0.1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{other}/index.html"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_page_on_another_port_cannot_open_the_signed_in_stream(browser, signed_in_app, foreign_page):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(signed_in_app)
    page.get_by_role("textbox", name="Username").fill("ann")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()
    page.wait_for_timeout(1500)  # the page posts the one-time code that sets the HttpOnly cookie
    assert any(c["name"] == "audit_session" for c in ctx.cookies())

    attacker = ctx.new_page()
    attacker.goto(foreign_page)
    attacker.wait_for_function("document.title !== ''", timeout=30_000)
    assert attacker.title() == "refused"

    page.reload()  # the app's own page still opens its stream with the cookie
    page.get_by_text("Signed in as").wait_for()
    page.get_by_role("button", name="Sign out").click()  # the sign-out route passes the guard and clears it
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_timeout(1500)
    assert not any(c["name"] == "audit_session" for c in ctx.cookies())
    ctx.close()
