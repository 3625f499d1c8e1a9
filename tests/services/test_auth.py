"""Access control: hashed passwords, lockout after repeated failures, disabled users, role checks in
the services, and every login attempt in the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from audit.services.governance import auth
from audit.services.governance.audit_trail import recent_entries
from audit.services.governance.principals import PermissionDenied
from storage.db import get_engine

PASSWORD = "correct horse battery"


def test_password_is_stored_only_as_a_hash(audit_home):
    auth.create_user("ann", PASSWORD, "auditor")
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE username='ann'")).scalar()
        dump = "\n".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    assert stored.startswith("$argon2") and PASSWORD not in stored
    assert PASSWORD not in dump
    assert auth.authenticate("ann", PASSWORD) == auth.Principal("ann", "auditor")


def test_lockout_after_repeated_failures(audit_home):
    auth.create_user("bob", PASSWORD, "viewer")
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(auth.AuthError, match="wrong password"):
            auth.authenticate("bob", "nope-nope-nope")
    with pytest.raises(auth.AuthError, match="too many failed logins"):
        auth.authenticate("bob", PASSWORD)  # even the right password is refused while locked
    actions = [e["action"] for e in recent_entries()]
    assert actions.count("login.failed") == auth.MAX_FAILED_LOGINS and "login.locked" in actions


def test_disabled_and_unknown_users_get_the_same_message(audit_home):
    auth.create_user("cy", PASSWORD, "viewer")
    auth.set_active("cy", False, actor=auth.SYSTEM)
    with pytest.raises(auth.AuthError) as disabled:
        auth.authenticate("cy", PASSWORD)
    with pytest.raises(auth.AuthError) as unknown:
        auth.authenticate("nobody", PASSWORD)
    assert str(disabled.value) == str(unknown.value)


@pytest.mark.parametrize("role, permission, allowed", [
    ("viewer", "read", True), ("viewer", "run", False), ("viewer", "sign", False),
    ("auditor", "run", True), ("auditor", "sign", True), ("auditor", "register", False),
    ("admin", "manage_users", True),
])
def test_role_permissions(role, permission, allowed):
    assert auth.Principal("u", role).can(permission) is allowed


def test_only_admins_manage_users(audit_home):
    with pytest.raises(PermissionDenied):
        auth.create_user("eve", PASSWORD, "admin", actor=auth.Principal("ann", "auditor"))
    with pytest.raises(ValueError, match="at least"):
        auth.create_user("short", "abc", "viewer")
    with pytest.raises(ValueError, match="role"):
        auth.create_user("x", PASSWORD, "superuser")


def test_ensure_admin_creates_once(audit_home):
    first = auth.ensure_admin()
    assert first and len(first) >= 12
    assert auth.ensure_admin() is None
    assert auth.authenticate("admin", first).role == "admin"


def test_failed_sign_ins_cost_one_password_verification_whoever_the_user(audit_home, monkeypatch):
    """Unknown, disabled, locked and known users with a wrong password all pay one Argon2 verification, so
    the answer's timing does not tell which usernames exist."""
    auth.create_user("known", "correct-horse-1", "auditor")
    auth.create_user("gone", "correct-horse-2", "auditor")
    auth.set_active("gone", False, actor=auth.Principal("root", "admin"))
    real = auth._hasher
    calls = []

    class Counting:
        def hash(self, password):
            return real.hash(password)

        def verify(self, hashed, password):
            calls.append(hashed)
            return real.verify(hashed, password)

    monkeypatch.setattr(auth, "_hasher", Counting())
    auth._decoy_hash.cache_clear()
    for name in ("nobody", "gone", "known"):
        calls.clear()
        with pytest.raises(auth.AuthError, match="unknown user or wrong password"):
            auth.authenticate(name, "wrong-password")
        assert len(calls) == 1, name
    for _ in range(10):  # lock the known account; a locked answer costs the same work
        try:
            auth.authenticate("known", "wrong-password")
        except auth.AuthError as exc:
            if "too many" in str(exc):
                break
    calls.clear()
    with pytest.raises(auth.AuthError, match="too many failed logins"):
        auth.authenticate("known", "correct-horse-1")
    assert len(calls) == 1
