"""Server-side sign-in sessions: a random token in the browser's cookie, only its SHA-256 in the database.

A session expires after ``AUDIT_SESSION_HOURS`` (default 12) and is revoked by sign-out, a password reset,
disabling the user or unmapping the single sign-on identity it came from. The cookie value is the token and
an HMAC of it under a key kept outside the database, so a tampered cookie is refused before any lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from audit.services.governance.principals import Principal, require
from storage import auditlog
from storage.db import audit_home, transaction
from storage.orm import User, utcnow
from storage.orm_sessions import SignInSession
from storage.repositories import UserRepository

COOKIE_NAME = "audit_session"
# On HTTPS the cookie carries the __Host- prefix: browsers then accept it only with Secure, Path=/ and no Domain,
# so it is bound to this exact host name and a plain-HTTP service on the same name cannot plant one.
SECURE_COOKIE_NAME = "__Host-" + COOKIE_NAME
SESSION_HOURS_ENV = "AUDIT_SESSION_HOURS"
SESSION_KEY_ENV = "AUDIT_SESSION_KEY"
DEFAULT_SESSION_HOURS = 12.0
KEY_FILE = "session.key"

ERR_HOURS = "AUDIT_SESSION_HOURS must be a number of hours between 0.01 and 720, got {!r}"
ERR_INACTIVE = "user {!r} does not exist or is disabled; no session was created"


def cookie_name(*, https: bool) -> str:
    """The name of the browser's session cookie: ``__Host-audit_session`` when the browser uses HTTPS."""
    return SECURE_COOKIE_NAME if https else COOKIE_NAME


def session_hours() -> float:
    """How long a new session stays valid, from ``AUDIT_SESSION_HOURS``."""
    raw = os.environ.get(SESSION_HOURS_ENV, "").strip()
    if not raw:
        return DEFAULT_SESSION_HOURS
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(ERR_HOURS.format(raw)) from None
    if not 0.01 <= hours <= 720:
        raise ValueError(ERR_HOURS.format(raw))
    return hours


def _key_path() -> Path:
    return audit_home() / "keys" / KEY_FILE


@lru_cache(maxsize=8)
def _file_key(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(p.parent, 0o700)  # the keys folder: owner-only, also when it existed with a wider mode
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    key = p.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{p}: the session key is too short (delete the file to generate a new one)")
    return key.encode()


def _signing_key() -> bytes:
    env = os.environ.get(SESSION_KEY_ENV, "").strip()
    if env:
        if len(env) < 32:
            raise ValueError(f"{SESSION_KEY_ENV} must be at least 32 characters")
        return env.encode()
    return _file_key(str(_key_path()))


def _signature(token: str) -> str:
    mac = hmac.new(_signing_key(), token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_of(cookie: str | None) -> str | None:
    """The token inside a cookie value whose signature checks out, else None."""
    if not cookie or not isinstance(cookie, str) or cookie.count(".") != 1 or len(cookie) > 200:
        return None
    token, sig = cookie.split(".")
    if not token or not hmac.compare_digest(sig, _signature(token)):
        return None
    return token


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes although they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def create_session(principal: Principal, *, via: str = "password", identity_id: int | None = None) -> str:
    """Open a session for a user who has just proven who they are; returns the cookie value (shown once)."""
    hours = session_hours()
    token = secrets.token_urlsafe(32)
    with transaction() as s:
        user = UserRepository(s).get(principal.username)
        if user is None or not user.active:
            raise ValueError(ERR_INACTIVE.format(principal.username))
        now = utcnow()
        s.add(SignInSession(token_sha256=token_hash(token), user_id=user.id, via=via, identity_id=identity_id,
                            created_at=now, expires_at=now + timedelta(hours=hours)))
    return f"{token}.{_signature(token)}"


def resolve_session(cookie: str | None) -> Principal | None:
    """The user a cookie signs in, with the role they hold now; None when the cookie is missing, tampered,
    unknown, expired or revoked, or the user was disabled."""
    token = _token_of(cookie)
    if token is None:
        return None
    with transaction() as s:
        row = s.scalars(select(SignInSession).where(SignInSession.token_sha256 == token_hash(token))).first()
        if row is None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow():
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        return Principal(user.username, user.role)


def _unrevoked_row(s: Session, cookie: str | None) -> SignInSession | None:
    """The session row a well-signed cookie names, unless it was revoked (expiry is the caller's to judge)."""
    token = _token_of(cookie)
    if token is None:
        return None
    row = s.scalars(select(SignInSession).where(SignInSession.token_sha256 == token_hash(token))).first()
    return None if row is None or row.revoked_at is not None else row


def revoke(cookie: str | None, *, reason: str = "sign-out") -> bool:
    """End the session a cookie carries (sign-out); True when a live session was ended."""
    with transaction() as s:
        row = _unrevoked_row(s, cookie)
        if row is None:
            return False
        row.revoked_at = utcnow()
        row.revoked_reason = reason
        user = s.get(User, row.user_id)
        name = user.username if user is not None else "?"
        auditlog.append(s, actor=name, action="logout", subject=name, details={"session": row.id, "via": row.via})
    return True


def revoke_user_sessions(s: Session, user_id: int, *, reason: str, identity_id: int | None = None) -> int:
    """Revoke every live session of a user (or only those opened through one identity) inside the caller's
    transaction; returns how many were revoked."""
    stmt = (update(SignInSession)
            .where(SignInSession.user_id == user_id, SignInSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason))
    if identity_id is not None:
        stmt = stmt.where(SignInSession.identity_id == identity_id)
    return s.execute(stmt).rowcount or 0


def list_sessions(*, actor: Principal, username: str | None = None) -> list[dict[str, object]]:
    """Live (unexpired, unrevoked) sessions, newest first; administrators only."""
    require(actor, "manage_users")
    now = utcnow()
    with transaction() as s:
        stmt = (select(SignInSession, User.username).join(User, User.id == SignInSession.user_id)
                .where(SignInSession.revoked_at.is_(None)).order_by(SignInSession.id.desc()))
        if username is not None:
            stmt = stmt.where(User.username == username)
        return [{"id": row.id, "username": name, "via": row.via, "created_at": _aware(row.created_at),
                 "expires_at": _aware(row.expires_at)}
                for row, name in s.execute(stmt) if _aware(row.expires_at) > now]


def revoke_session_by_id(session_id: int, *, actor: Principal) -> bool:
    """End one live session (an administrator signing someone out); True when it was live."""
    require(actor, "manage_users")
    with transaction() as s:
        row = s.get(SignInSession, session_id)
        if row is None:
            raise ValueError(f"no session with id {session_id}")
        if row.revoked_at is not None or _aware(row.expires_at) <= utcnow():
            return False
        row.revoked_at = utcnow()
        row.revoked_reason = f"revoked by {actor.username}"
        user = s.get(User, row.user_id)
        auditlog.append(s, actor=actor.username, action="session.revoke", subject=user.username if user else "?",
                        details={"session": row.id, "via": row.via})
    return True


def revoke_all_sessions(username: str, *, actor: Principal) -> int:
    """End every live session of a user; returns how many."""
    require(actor, "manage_users")
    with transaction() as s:
        user = UserRepository(s).get(username)
        if user is None:
            raise ValueError(f"user {username!r} does not exist")
        n = revoke_user_sessions(s, user.id, reason=f"revoked by {actor.username}")
        auditlog.append(s, actor=actor.username, action="session.revoke", subject=username,
                        details={"sessions_revoked": n})
    return n


# ------------------------------------------------------------------ handing the cookie to the browser

HANDOFF_SECONDS = 120.0
_handoffs: dict[str, tuple[str, float]] = {}
_handoffs_lock = threading.Lock()


def issue_handoff(cookie: str) -> str:
    """A one-time code (valid ``HANDOFF_SECONDS``) that the browser exchanges for the session cookie at the web
    server, which sets it HttpOnly: the cookie value itself never reaches the page's scripts."""
    if _token_of(cookie) is None:
        raise ValueError("not a session cookie of this installation")
    code = secrets.token_urlsafe(32)
    now = time.monotonic()
    with _handoffs_lock:
        for key in [k for k, (_, exp) in _handoffs.items() if exp <= now]:
            del _handoffs[key]
        _handoffs[code] = (cookie, now + HANDOFF_SECONDS)
    return code


def handoff_pending(code: str | None) -> bool:
    with _handoffs_lock:
        item = _handoffs.get(code or "")
    return item is not None and item[1] > time.monotonic()


def redeem_handoff(code: str | None) -> tuple[str, float] | None:
    """The cookie a code stands for and its remaining lifetime in seconds, once; None for an unknown, used or
    expired code, or when the session ended in the meantime."""
    with _handoffs_lock:
        item = _handoffs.pop(code or "", None)
    if item is None or item[1] <= time.monotonic():
        return None
    cookie = item[0]
    with transaction() as s:
        row = _unrevoked_row(s, cookie)
        if row is None:
            return None
        remaining = (_aware(row.expires_at) - utcnow()).total_seconds()
    return (cookie, remaining) if remaining > 0 else None
