"""Issue 22, holes 5 and 6 replayed: usernames cannot be told apart by the answer or its cost after repeated
failures, a stranger cannot lock an account out (failures throttle the client that made them), and sign-in
input cannot write unbounded or unthrottled rows into the immutable log."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from audit.services.governance import auth, throttle
from storage.db import transaction
from storage.orm import AuditLogEntry

PASSWORD = "correct-horse-battery"
STRANGER, OWNER = "203.0.113.5", "198.51.100.7"


@pytest.fixture(autouse=True)
def _fresh_counters():
    throttle.reset()
    yield
    throttle.reset()


class _Counting:
    """The real hasher, counting verifications (the work a sign-in attempt costs)."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def hash(self, password):
        return self.real.hash(password)

    def verify(self, hashed, password):
        self.calls += 1
        return self.real.verify(hashed, password)


def _attempt(username: str, password: str, client: str, hasher: _Counting) -> tuple[str, int]:
    before = hasher.calls
    with pytest.raises(auth.AuthError) as exc:
        auth.authenticate(username, password, client=client)
    return re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", str(exc.value)), hasher.calls - before


def _log_rows(prefix: str = "login") -> list[AuditLogEntry]:
    with transaction() as s:
        return list(s.scalars(select(AuditLogEntry).where(AuditLogEntry.action.startswith(prefix))).all())


def test_known_and_unknown_users_get_the_same_answers_for_the_same_cost(audit_home, monkeypatch):
    auth.create_user("bob", PASSWORD, "auditor")
    hasher = _Counting(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", hasher)
    auth._decoy_hash.cache_clear()
    known = [_attempt("bob", "wrong-password", STRANGER, hasher) for _ in range(auth.MAX_FAILED_LOGINS + 3)]
    unknown = [_attempt("nobody", "wrong-password", STRANGER, hasher) for _ in range(auth.MAX_FAILED_LOGINS + 3)]
    assert known == unknown, (known, unknown)
    assert {cost for _, cost in known} == {1}
    assert known[-1][0].startswith("too many failed logins from this client")


def test_a_stranger_hammering_an_account_does_not_lock_its_owner_out(audit_home):
    auth.create_user("admin2", PASSWORD, "admin")
    for _ in range(3 * auth.MAX_FAILED_LOGINS):
        with pytest.raises(auth.AuthError):
            auth.authenticate("admin2", "guess-guess-guess", client=STRANGER)
    with pytest.raises(auth.AuthError, match="too many failed logins"):
        auth.authenticate("admin2", PASSWORD, client=STRANGER)  # the stranger is blocked, even when right
    assert auth.authenticate("admin2", PASSWORD, client=OWNER) == auth.Principal("admin2", "admin")


def test_a_client_guessing_many_usernames_is_blocked_for_all_of_them(audit_home):
    auth.create_user("carol", PASSWORD, "viewer")
    for i in range(throttle.MAX_CLIENT_FAILURES):
        with pytest.raises(auth.AuthError):
            auth.authenticate(f"user{i}", "guess-guess-guess", client=STRANGER)
    with pytest.raises(auth.AuthError, match="too many failed logins"):
        auth.authenticate("carol", PASSWORD, client=STRANGER)
    assert auth.authenticate("carol", PASSWORD, client=OWNER).username == "carol"


def test_a_megabyte_username_writes_no_megabyte_row(audit_home):
    with pytest.raises(auth.AuthError, match="too long"):
        auth.authenticate("u" * 1_000_000, "whatever-password", client=STRANGER)
    with pytest.raises(auth.AuthError, match="unknown user or wrong password"):
        auth.authenticate("v" * 250, "whatever-password", client=STRANGER)
    rows = _log_rows()
    assert len(rows) == 1
    row = rows[0]
    assert len(row.actor) <= 80 and len(row.subject) <= 255 and len(row.details) < 200
    assert row.actor.startswith("v" * 40) and row.actor.endswith("chars]")


def test_failed_sign_ins_are_logged_at_a_bounded_rate_per_client(audit_home):
    for i in range(throttle.LOGGED_FAILURES_PER_WINDOW + 15):
        with pytest.raises(auth.AuthError):
            auth.authenticate(f"guess{i}", "guess-guess-guess", client=STRANGER)
    rows = _log_rows()
    assert len(rows) == throttle.LOGGED_FAILURES_PER_WINDOW + 1, [r.action for r in rows]
    assert rows[-1].action == "login.throttled" and rows[-1].subject == STRANGER
    # Another client's failures are still logged.
    with pytest.raises(auth.AuthError):
        auth.authenticate("guess-other", "guess-guess-guess", client=OWNER)
    assert len(_log_rows()) == len(rows) + 1
    with transaction() as s:
        assert s.scalar(select(func.max(func.length(AuditLogEntry.actor)))) <= 80


def test_attempts_without_an_address_are_slowed_not_locked(audit_home, monkeypatch):
    """The command line and browsers on this machine share one client: failures there delay the next attempt
    (doubling, at most a minute), so nobody can keep the owner out for long by failing first."""
    import time as real_time
    import types

    auth.create_user("dora", PASSWORD, "auditor")
    offset = [0.0]
    monkeypatch.setattr(throttle, "time", types.SimpleNamespace(time=lambda: real_time.time() + offset[0],
                                                                monotonic=lambda: real_time.monotonic() + offset[0]))
    for _ in range(auth.MAX_FAILED_LOGINS + 3):
        offset[0] += throttle.MAX_DELAY_S  # each failure waits out the previous delay
        with pytest.raises(auth.AuthError, match="unknown user or wrong password"):
            auth.authenticate("dora", "guess-guess-guess")
    with pytest.raises(auth.AuthError, match="too many failed logins"):
        auth.authenticate("dora", PASSWORD)  # right after a failure: still slowed
    offset[0] += throttle.MAX_DELAY_S + 1
    assert auth.authenticate("dora", PASSWORD).username == "dora"


def test_the_forwarded_address_is_read_only_behind_a_trusted_proxy(monkeypatch):
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    monkeypatch.delenv(throttle.TRUSTED_PROXY_ENV, raising=False)
    assert throttle.client_address(None, headers) is None
    assert throttle.client_address("192.0.2.1", headers) == "192.0.2.1"
    monkeypatch.setenv(throttle.TRUSTED_PROXY_ENV, "1")
    assert throttle.client_address(None, headers) == "198.51.100.7"
    assert throttle.client_key(None) == throttle.LOCAL_CLIENT and len(throttle.client_key("x" * 500)) == 64
