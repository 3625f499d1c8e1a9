"""Users, roles and permissions. Roles are enforced here, in the service layer, not only in the UI.

admin: manage users and the registry; auditor: run audits, generate and sign reports; viewer: read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from storage import auditlog
from storage.db import transaction
from storage.orm import ROLES, User, utcnow
from storage.repositories import UserRepository

PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "auditor": frozenset({"read", "run", "report", "sign"}),
    "admin": frozenset({"read", "run", "report", "sign", "register", "manage_users"}),
}
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


class PermissionDenied(PermissionError):
    """The acting user's role does not allow this action."""


class AuthError(ValueError):
    """Login failed; the message never says whether the user exists."""


@dataclass(frozen=True)
class Principal:
    username: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


SYSTEM = Principal("system", "admin")


def require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise PermissionDenied(f"user {principal.username!r} ({principal.role}) may not {permission.replace('_', ' ')}")


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


def authenticate(username: str, password: str) -> Principal:
    """Check a password; repeated failures lock the account for a while. Every attempt is logged, and
    the log entry is committed before a failure is raised."""
    now = utcnow()
    error: AuthError | None = None
    principal: Principal | None = None
    with transaction() as s:
        user = UserRepository(s).get(username)
        locked = user.locked_until if user is not None else None
        if locked is not None and locked.tzinfo is None:
            locked = locked.replace(tzinfo=now.tzinfo)
        if user is None or not user.active:
            _spend_verify(password)
            auditlog.append(s, actor=username or "?", action="login.failed", subject=username)
            error = AuthError("unknown user or wrong password")
        elif locked is not None and locked > now:
            _spend_verify(password)
            auditlog.append(s, actor=username, action="login.locked", subject=username)
            error = AuthError(f"too many failed logins; try again after {locked:%H:%M} UTC")
        else:
            try:
                _hasher.verify(user.password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = now + LOCKOUT
                    user.failed_logins = 0
                auditlog.append(s, actor=username, action="login.failed", subject=username)
                error = AuthError("unknown user or wrong password")
            else:
                user.failed_logins = 0
                user.locked_until = None
                auditlog.append(s, actor=username, action="login", subject=username)
                principal = Principal(user.username, user.role)
    if principal is None:
        raise error or AuthError("unknown user or wrong password")
    return principal

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
            from audit.services.sessions import revoke_user_sessions  # sessions imports this module

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
        from audit.services.sessions import revoke_user_sessions  # sessions imports this module

        revoked = revoke_user_sessions(s, user.id, reason="password reset")
        auditlog.append(s, actor=actor.username, action="user.reset_password", subject=username,
                        details={"sessions_revoked": revoked})
