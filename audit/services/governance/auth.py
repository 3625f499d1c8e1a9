"""Users and sign-in: accounts, password checks with throttling, enabling, disabling and password resets
(which end the user's sessions). Roles and the permission check are in ``principals``."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from audit.services.governance import throttle
from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.governance.sessions import revoke_user_sessions
from storage import auditlog
from storage.db import transaction
from storage.orm import ROLES, User
from storage.repositories import UserRepository

MAX_FAILED_LOGINS = throttle.MAX_FAILED_LOGINS
LOCKOUT = timedelta(seconds=throttle.LOCKOUT_S)
MIN_PASSWORD_LENGTH = 10
MAX_USERNAME_INPUT = 256  # longer sign-in input is refused before it costs anything or reaches the log
MAX_PASSWORD_INPUT = 1024
ERR_LOGIN = "unknown user or wrong password"
ERR_BLOCKED = "too many failed logins from this client; try again after {:%H:%M:%S} UTC"

_hasher = PasswordHasher()


class AuthError(ValueError):
    """Login failed; the message never says whether the user exists."""


def create_user(username: str, password: str, role: str, *, actor: Principal = SYSTEM) -> Principal:
    require(actor, "manage_users")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    username = username.strip()
    if not username or len(username) > 80:
        raise ValueError("username must be 1 to 80 characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    with transaction() as s:
        repo = UserRepository(s)
        if repo.get(username):
            raise ValueError(f"user {username!r} already exists")
        repo.add(User(username=username, password_hash=_hasher.hash(password), role=role))
        auditlog.append(s, actor=actor.username, action="user.create", subject=username, details={"role": role})
    return Principal(username, role)


def ensure_admin() -> str | None:
    """Create an 'admin' account when there is none; returns the generated password (shown once)."""
    with transaction() as s:
        if UserRepository(s).count("admin"):
            return None
    password = secrets.token_urlsafe(12)
    create_user("admin", password, "admin")
    return password


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash no password matches: unknown and disabled users are verified against it, so a failed sign-in
    costs the same work whether or not the username exists."""
    return _hasher.hash(secrets.token_urlsafe(24))


def _spend_verify(password: str) -> None:
    try:
        _hasher.verify(_decoy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        pass  # always a mismatch: only the work matters


def _database() -> str:
    from storage.db import database_url

    return database_url()


def _log_failure(s, database: str, client: str, username: str, action: str, details: dict) -> None:  # noqa: ANN001
    """A failed sign-in in the audit log, bounded: the username cut to the column's size by auditlog.append,
    and at most throttle.LOGGED_FAILURES_PER_WINDOW rows per client and window (then one note, then silence)."""
    log_it, note = throttle.should_log(database, client)
    if log_it:
        auditlog.append(s, actor=username or "?", action=action, subject=username,
                        details={"client": client, **details})
    elif note:
        auditlog.append(s, actor="system", action="login.throttled", subject=client,
                        details={"client": client, "not_logged_for_s": throttle.WINDOW_S,
                                 "after": throttle.LOGGED_FAILURES_PER_WINDOW})


def authenticate(username: str, password: str, *, client: str | None = None) -> Principal:
    """Check a password. ``client`` names where the attempt comes from (the web server's view of the browser's
    address; None for the command line): failures block that client, for that username after
    MAX_FAILED_LOGINS and for every username after throttle.MAX_CLIENT_FAILURES, never anyone else, so a
    stranger cannot lock an account out. Unknown, disabled and known users get the same answer for the same
    cost (one Argon2 verification), blocked or not. Attempts are logged with bounded fields, at most
    throttle.LOGGED_FAILURES_PER_WINDOW failures per client and window; the log entry is committed before a
    failure is raised."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise AuthError(ERR_LOGIN)
    if len(username) > MAX_USERNAME_INPUT or len(password) > MAX_PASSWORD_INPUT:
        # No account can have such a name: refused before any work, logging or counting (one-line reason).
        raise AuthError(f"username or password too long (at most {MAX_USERNAME_INPUT} and {MAX_PASSWORD_INPUT} "
                        "characters)")
    database, who = _database(), throttle.client_key(client)
    name = username.strip()
    error: AuthError | None = None
    principal: Principal | None = None
    with transaction() as s:
        blocked = throttle.blocked_until(database, who, name)
        user = UserRepository(s).get(name) if name else None
        if blocked is not None:
            _spend_verify(password)
            _log_failure(s, database, who, name, "login.locked", {})
            error = AuthError(_blocked_message(blocked))
        elif user is None or not user.active:
            _spend_verify(password)
            throttle.record_failure(database, who, name)
            _log_failure(s, database, who, name, "login.failed", {})
            error = AuthError(ERR_LOGIN)
        else:
            try:
                _hasher.verify(user.password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                # No write to the user's row: a failure for a known name must cost what one for an unknown costs.
                throttle.record_failure(database, who, name)
                _log_failure(s, database, who, name, "login.failed", {})
                error = AuthError(ERR_LOGIN)
            else:
                user.failed_logins = 0
                user.locked_until = None
                throttle.record_success(database, who, name)
                auditlog.append(s, actor=user.username, action="login", subject=user.username,
                                details={"client": who})
                principal = Principal(user.username, user.role)
    if principal is None:
        raise error or AuthError(ERR_LOGIN)
    return principal


def _blocked_message(until: float) -> str:
    # Says when this client may try again; it is the same for a username that exists and one that does not.
    return ERR_BLOCKED.format(datetime.fromtimestamp(until, timezone.utc))


def list_users(*, actor: Principal) -> list[dict[str, object]]:
    require(actor, "manage_users")
    with transaction() as s:
        return [{"username": u.username, "role": u.role, "active": u.active} for u in UserRepository(s).all()]


def set_active(username: str, active: bool, *, actor: Principal) -> None:
    require(actor, "manage_users")
    with transaction() as s:
        user = UserRepository(s).get(username)
        if user is None:
            raise ValueError(f"user {username!r} does not exist")
        user.active = active
        details = {}
        if not active:
            details["sessions_revoked"] = revoke_user_sessions(s, user.id, reason="user disabled")
        auditlog.append(s, actor=actor.username, action="user.enable" if active else "user.disable", subject=username,
                        details=details)


def reset_password(username: str, password: str, *, actor: Principal) -> None:
    require(actor, "manage_users")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    with transaction() as s:
        user = UserRepository(s).get(username)
        if user is None:
            raise ValueError(f"user {username!r} does not exist")
        user.password_hash = _hasher.hash(password)
        user.failed_logins = 0
        user.locked_until = None
        revoked = revoke_user_sessions(s, user.id, reason="password reset")
        auditlog.append(s, actor=actor.username, action="user.reset_password", subject=username,
                        details={"sessions_revoked": revoked})
