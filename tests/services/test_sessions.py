"""Server-side sign-in sessions and single sign-on mapping: expiry, revocation, hashed tokens, tampering,
and identities that map (or do not map) to local users."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from audit.services.governance import auth, identities, sessions
from audit.services.governance.audit_trail import recent_entries
from audit.services.governance.principals import PermissionDenied
from storage.db import get_engine

PASSWORD = "correct horse battery"
ADMIN = auth.Principal("root", "admin")
ISSUER = "https://idp.example.org"


@pytest.fixture()
def ann(audit_home):
    return auth.create_user("ann", PASSWORD, "auditor")


def test_a_session_resolves_to_its_user_until_sign_out(ann):
    cookie = sessions.create_session(auth.authenticate("ann", PASSWORD))
    assert sessions.resolve_session(cookie) == auth.Principal("ann", "auditor")
    assert sessions.revoke(cookie) is True
    assert sessions.resolve_session(cookie) is None
    assert sessions.revoke(cookie) is False  # already ended
    assert "logout" in [e["action"] for e in recent_entries()]


def test_the_token_is_stored_only_as_its_sha256(ann):
    cookie = sessions.create_session(ann)
    token = cookie.split(".")[0]
    with get_engine().connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM sessions"))]
        log = "\n".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    dump = repr(rows)
    assert len(rows) == 1 and token not in dump and cookie not in dump and token not in log
    assert sessions.token_hash(token) in dump


def test_a_session_expires(ann, monkeypatch):
    monkeypatch.setenv("AUDIT_SESSION_HOURS", "2")
    cookie = sessions.create_session(ann)
    start = sessions.utcnow()
    monkeypatch.setattr(sessions, "utcnow", lambda: start + timedelta(hours=1, minutes=59))
    assert sessions.resolve_session(cookie) is not None
    monkeypatch.setattr(sessions, "utcnow", lambda: start + timedelta(hours=2, minutes=1))
    assert sessions.resolve_session(cookie) is None


@pytest.mark.parametrize("value", ["abc", "0", "-3", "10000"])
def test_a_bad_session_length_is_a_clear_error(ann, monkeypatch, value):
    monkeypatch.setenv("AUDIT_SESSION_HOURS", value)
    with pytest.raises(ValueError, match="AUDIT_SESSION_HOURS must be a number of hours"):
        sessions.create_session(ann)


def test_password_reset_and_disable_revoke_every_session_of_that_user(ann):
    auth.create_user("bob", PASSWORD, "viewer")
    a1, a2 = sessions.create_session(ann), sessions.create_session(ann)
    b = sessions.create_session(auth.Principal("bob", "viewer"))
    auth.reset_password("ann", "another long password", actor=ADMIN)
    assert sessions.resolve_session(a1) is None and sessions.resolve_session(a2) is None
    assert sessions.resolve_session(b) == auth.Principal("bob", "viewer")  # other users keep theirs
    reset = [e for e in recent_entries() if e["action"] == "user.reset_password"][0]
    assert '"sessions_revoked":2' in str(reset["details"]).replace(" ", "")
    auth.set_active("bob", False, actor=ADMIN)
    assert sessions.resolve_session(b) is None
    auth.set_active("bob", True, actor=ADMIN)
    assert sessions.resolve_session(b) is None  # re-enabling does not revive a revoked session


def test_tampered_or_foreign_cookies_are_refused(ann):
    cookie = sessions.create_session(ann)
    token, sig = cookie.split(".")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in [f"{flipped}.{sig}", f"{token}.{sig[:-1]}x", token, "", None, "a.b.c", "x" * 500]:
        assert sessions.resolve_session(bad) is None, bad
    # a token that was never issued but carries a valid signature is still unknown
    forged = sessions.secrets.token_urlsafe(32)
    assert sessions.resolve_session(f"{forged}.{sessions._signature(forged)}") is None
    assert sessions.resolve_session(cookie) is not None


def test_the_signature_depends_on_the_key(ann, monkeypatch):
    cookie = sessions.create_session(ann)
    monkeypatch.setenv("AUDIT_SESSION_KEY", "k" * 40)
    assert sessions.resolve_session(cookie) is None  # signed under the key file, checked under another key


def test_role_comes_from_the_user_row_now(ann):
    cookie = sessions.create_session(auth.Principal("ann", "admin"))  # a stale principal cannot raise the role
    assert sessions.resolve_session(cookie) == auth.Principal("ann", "auditor")


def test_no_session_for_a_disabled_or_unknown_user(ann):
    auth.set_active("ann", False, actor=ADMIN)
    with pytest.raises(ValueError, match="does not exist or is disabled"):
        sessions.create_session(ann)
    with pytest.raises(ValueError, match="does not exist or is disabled"):
        sessions.create_session(auth.Principal("ghost", "admin"))


def test_only_admins_list_sessions(ann):
    sessions.create_session(ann)
    with pytest.raises(PermissionDenied):
        sessions.list_sessions(actor=ann)
    assert [r["username"] for r in sessions.list_sessions(actor=ADMIN)] == ["ann"]


# ------------------------------------------------------------------ single sign-on mapping

def test_a_mapped_subject_signs_in_as_the_local_user(ann):
    identities.map_identity(ISSUER, "ann", subject="sub-123", actor=ADMIN)
    principal, cookie = identities.sign_in_with_identity({"iss": ISSUER, "sub": "sub-123", "email": "x@y.org"})
    assert principal == auth.Principal("ann", "auditor")
    assert sessions.resolve_session(cookie) == principal
    login = [e for e in recent_entries() if e["action"] == "login"][0]
    assert "sso" in str(login["details"])


def test_an_unmapped_identity_gets_no_access_and_a_clear_message(ann):
    identities.map_identity(ISSUER, "ann", subject="sub-123", actor=ADMIN)
    for claims in ({"iss": ISSUER, "sub": "other"}, {"iss": "https://evil.example", "sub": "sub-123"}):
        with pytest.raises(identities.UnmappedIdentity, match="has no access.*administrator must map it"):
            identities.sign_in_with_identity(claims)
    with pytest.raises(identities.UnmappedIdentity, match="no issuer"):
        identities.sign_in_with_identity({"email": "ann@example.org"})
    assert [e["action"] for e in recent_entries()].count("login.failed") == 3
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions")).scalar() == 0


def test_email_mapping_needs_a_verified_address(ann):
    identities.map_identity(ISSUER, "ann", email="Ann@Example.org", actor=ADMIN)
    principal, _ = identities.sign_in_with_identity({"iss": ISSUER, "sub": "s1", "email": "ann@example.org",
                                                     "email_verified": True})
    assert principal.username == "ann"
    with pytest.raises(identities.UnmappedIdentity):
        identities.sign_in_with_identity({"iss": ISSUER, "sub": "s2", "email": "ann@example.org",
                                          "email_verified": False})


def test_unmapping_revokes_the_sessions_it_opened_but_not_password_ones(ann):
    identities.map_identity(ISSUER, "ann", subject="sub-123", actor=ADMIN)
    _, sso_cookie = identities.sign_in_with_identity({"iss": ISSUER, "sub": "sub-123"})
    password_cookie = sessions.create_session(ann)
    assert identities.unmap_identity(ISSUER, subject="sub-123", actor=ADMIN) == 1
    assert sessions.resolve_session(sso_cookie) is None
    assert sessions.resolve_session(password_cookie) is not None
    with pytest.raises(identities.UnmappedIdentity):
        identities.sign_in_with_identity({"iss": ISSUER, "sub": "sub-123"})
    assert identities.list_identities(actor=ADMIN) == []


def test_a_disabled_user_cannot_sign_in_through_their_identity(ann):
    identities.map_identity(ISSUER, "ann", subject="sub-123", actor=ADMIN)
    auth.set_active("ann", False, actor=ADMIN)
    with pytest.raises(identities.UnmappedIdentity, match="disabled"):
        identities.sign_in_with_identity({"iss": ISSUER, "sub": "sub-123"})


def test_mapping_rules(ann):
    with pytest.raises(PermissionDenied):
        identities.map_identity(ISSUER, "ann", subject="s", actor=ann)
    with pytest.raises(ValueError, match="exactly one of subject or email"):
        identities.map_identity(ISSUER, "ann", subject="s", email="a@b.c", actor=ADMIN)
    with pytest.raises(ValueError, match="does not exist"):
        identities.map_identity(ISSUER, "nobody", subject="s", actor=ADMIN)
    with pytest.raises(ValueError, match="issuer"):
        identities.map_identity(" ", "ann", subject="s", actor=ADMIN)
    identities.map_identity(ISSUER, "ann", subject="s", actor=ADMIN)
    with pytest.raises(ValueError, match="already mapped to user 'ann'"):
        identities.map_identity(ISSUER, "ann", subject="s", actor=ADMIN)
    with pytest.raises(ValueError, match="is not mapped"):
        identities.unmap_identity(ISSUER, subject="other", actor=ADMIN)
    assert identities.list_identities(actor=ADMIN) == [
        {"issuer": ISSUER, "claim": "sub", "value": "s", "username": "ann", "created_by": "root"}]


def test_a_handoff_code_gives_the_cookie_once(ann):
    cookie = sessions.create_session(ann)
    code = sessions.issue_handoff(cookie)
    assert code != cookie and sessions.handoff_pending(code)
    got, seconds = sessions.redeem_handoff(code)
    assert got == cookie and 0 < seconds <= sessions.session_hours() * 3600
    assert sessions.redeem_handoff(code) is None and not sessions.handoff_pending(code)
    assert sessions.redeem_handoff("made-up") is None and sessions.redeem_handoff(None) is None


def test_a_handoff_code_expires_and_dies_with_its_session(ann, monkeypatch):
    cookie = sessions.create_session(ann)
    late = sessions.issue_handoff(cookie)
    revoked = sessions.issue_handoff(cookie)
    now = sessions.time.monotonic()
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now + sessions.HANDOFF_SECONDS + 1)
    assert sessions.redeem_handoff(late) is None
    monkeypatch.undo()
    sessions.revoke(cookie)
    assert sessions.redeem_handoff(revoked) is None


def test_a_handoff_is_only_issued_for_a_signed_cookie(ann):
    with pytest.raises(ValueError, match="not a session cookie"):
        sessions.issue_handoff("forged.value")


def test_admins_revoke_a_session_by_id_or_all_of_a_user(ann):
    first, second = sessions.create_session(ann), sessions.create_session(ann)
    sid = sessions.list_sessions(actor=ADMIN, username="ann")[-1]["id"]  # newest first: the last is the first
    with pytest.raises(PermissionDenied):
        sessions.revoke_session_by_id(sid, actor=ann)
    assert sessions.revoke_session_by_id(sid, actor=ADMIN) is True
    assert sessions.resolve_session(first) is None and sessions.resolve_session(second) == ann
    assert sessions.revoke_session_by_id(sid, actor=ADMIN) is False
    with pytest.raises(ValueError, match="no session with id"):
        sessions.revoke_session_by_id(10_000, actor=ADMIN)
    assert sessions.revoke_all_sessions("ann", actor=ADMIN) == 1
    assert sessions.resolve_session(second) is None
    assert [e["action"] for e in recent_entries(2)] == ["session.revoke", "session.revoke"]
