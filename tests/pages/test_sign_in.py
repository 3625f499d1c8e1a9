"""AppTest of the router's sign-in: a password sign-in opens a server-side session and hands the browser a
one-time code for the cookie; a session revoked elsewhere signs the tab out on its next run; sign-out revokes
it; single sign-on is offered only when secrets configure it."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.services.governance import auth, sessions

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "auditor-pass-123"


@pytest.fixture()
def ann(audit_home):
    return auth.create_user("ann", PASSWORD, "auditor")


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)


def _sign_in(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.text_input[0].input("ann")
    at.text_input[1].input(password)
    return next(b for b in at.button if b.label == "Sign in").click().run()


def _app_with(principal: auth.Principal, cookie: str) -> AppTest:
    """A tab that signed in earlier (AppTest re-runs only the page after the first run, so each step that
    needs the router starts a fresh AppTest carrying the tab's session state)."""
    at = _app()
    at.session_state["principal"] = principal
    at.session_state["session_cookie"] = cookie
    return at


def test_sign_in_opens_a_session_and_hands_over_the_cookie(ann):
    at = _sign_in(_app().run())
    assert not at.exception, at.exception
    cookie = at.session_state["session_cookie"]
    assert sessions.resolve_session(cookie) == ann
    assert sessions.handoff_pending(at.session_state["cookie_handoff"])
    assert any("Signed in as" in c.value for c in at.sidebar.caption)


def test_sign_out_revokes_the_session(ann):
    cookie = sessions.create_session(ann)
    at = _app_with(ann, cookie).run()
    assert any("Signed in as" in c.value for c in at.sidebar.caption)
    next(b for b in at.sidebar.button if b.label == "Sign out").click().run()
    assert not at.exception
    assert sessions.resolve_session(cookie) is None
    assert "principal" not in at.session_state and "session_cookie" not in at.session_state


def test_a_wrong_password_opens_no_session(ann):
    at = _sign_in(_app().run(), password="wrong-password-1")
    assert any("unknown user or wrong password" in e.value for e in at.error)
    assert "session_cookie" not in at.session_state
    assert sessions.list_sessions(actor=auth.Principal("root", "admin")) == []


def test_a_session_revoked_elsewhere_signs_this_tab_out(ann):
    cookie = sessions.create_session(ann)
    assert any("Signed in as" in c.value for c in _app_with(ann, cookie).run().sidebar.caption)
    auth.reset_password("ann", "a-new-password-1", actor=auth.Principal("root", "admin"))
    at = _app_with(ann, cookie).run()
    assert not at.exception
    assert "principal" not in at.session_state and "session_cookie" not in at.session_state
    assert any("Your session ended" in i.value for i in at.info)
    assert not at.sidebar.caption and next(b for b in at.button if b.label == "Sign in")


def test_single_sign_on_is_offered_only_when_configured(ann):
    at = _app().run()
    assert not [b for b in at.button if "single sign-on" in b.label]
    at = _app()
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
                          "client_id": "workbench", "client_secret": "x",
                          "server_metadata_url": "https://id.example.org/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, at.exception
    offered = [b.label for b in at.button if "single sign-on" in b.label]
    missing_lib = [c.value for c in at.caption if "Authlib is not installed" in c.value]
    assert offered or missing_lib  # the button, or the one line that says what to install for it
