"""Single sign-on: identities of an OpenID Connect provider mapped by an administrator to local users.

An identity is an issuer plus either the provider's subject (stable, preferred) or a verified e-mail
address. Signing in with an unmapped identity grants nothing; the refusal names what an admin must map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from audit.services.governance.auth import AuthError
from audit.services.governance.principals import Principal, require
from audit.services.governance.sessions import create_session, revoke_user_sessions
from storage import auditlog
from storage.db import transaction
from storage.orm import User
from storage.orm_sessions import ExternalIdentity
from storage.repositories import UserRepository

ERR_ONE_KEY = "give exactly one of subject or email"
ERR_ISSUER = "issuer must be the provider's issuer URL (the 'iss' claim), 1 to 255 characters"
ERR_VALUE = "{} must be 1 to 255 characters"
ERR_NO_USER = "user {!r} does not exist"
ERR_TAKEN = "identity {} {}={} is already mapped to user {!r}; unmap it first"
ERR_NOT_MAPPED = "identity {} {}={} is not mapped"
ERR_CLAIMS = "the provider sent no issuer ('iss') or subject ('sub'); single sign-on cannot identify this account"


class UnmappedIdentity(AuthError):
    """A provider identity that no administrator has mapped to a local user (or mapped to a disabled one)."""


def _key(issuer: str, subject: str | None, email: str | None) -> tuple[str, str, str]:
    issuer = (issuer or "").strip()
    if not issuer or len(issuer) > 255:
        raise ValueError(ERR_ISSUER)
    if (subject is None) == (email is None):
        raise ValueError(ERR_ONE_KEY)
    claim, value = ("sub", subject.strip()) if subject is not None else ("email", email.strip().lower())
    if not value or len(value) > 255:
        raise ValueError(ERR_VALUE.format("subject" if claim == "sub" else "email"))
    return issuer, claim, value


def _find(s: Any, issuer: str, claim: str, value: str) -> ExternalIdentity | None:  # noqa: ANN401 - Session
    return s.scalars(select(ExternalIdentity).where(ExternalIdentity.issuer == issuer, ExternalIdentity.claim == claim,
                                                    ExternalIdentity.value == value)).first()


def map_identity(issuer: str, username: str, *, subject: str | None = None, email: str | None = None,
                 actor: Principal) -> dict[str, object]:
    """Let a provider identity sign in as a local user (and so with that user's role)."""
    require(actor, "manage_users")
    issuer, claim, value = _key(issuer, subject, email)
    with transaction() as s:
        user = UserRepository(s).get(username)
        if user is None:
            raise ValueError(ERR_NO_USER.format(username))
        existing = _find(s, issuer, claim, value)
        if existing is not None:
            owner = s.get(User, existing.user_id)
            raise ValueError(ERR_TAKEN.format(issuer, claim, value, owner.username if owner else "?"))
        row = ExternalIdentity(issuer=issuer, claim=claim, value=value, user_id=user.id, created_by=actor.username)
        s.add(row)
        s.flush()
        auditlog.append(s, actor=actor.username, action="identity.map", subject=username,
                        details={"issuer": issuer, "claim": claim, "value": value})
        return {"id": row.id, "issuer": issuer, "claim": claim, "value": value, "username": username}


def unmap_identity(issuer: str, *, subject: str | None = None, email: str | None = None, actor: Principal) -> int:
    """Remove a mapping and revoke the sessions it opened; returns how many sessions were revoked."""
    require(actor, "manage_users")
    issuer, claim, value = _key(issuer, subject, email)
    with transaction() as s:
        row = _find(s, issuer, claim, value)
        if row is None:
            raise ValueError(ERR_NOT_MAPPED.format(issuer, claim, value))
        user = s.get(User, row.user_id)
        revoked = revoke_user_sessions(s, row.user_id, reason="identity unmapped", identity_id=row.id)
        auditlog.append(s, actor=actor.username, action="identity.unmap", subject=user.username if user else "?",
                        details={"issuer": issuer, "claim": claim, "value": value, "sessions_revoked": revoked})
        s.delete(row)
        return revoked


def list_identities(*, actor: Principal) -> list[dict[str, object]]:
    require(actor, "manage_users")
    with transaction() as s:
        rows = s.execute(select(ExternalIdentity, User.username).join(User, User.id == ExternalIdentity.user_id)
                         .order_by(ExternalIdentity.issuer, ExternalIdentity.claim, ExternalIdentity.value))
        return [{"issuer": r.issuer, "claim": r.claim, "value": r.value, "username": name,
                 "created_by": r.created_by} for r, name in rows]


def _match(s: Any, claims: Mapping[str, Any]) -> ExternalIdentity | None:  # noqa: ANN401 - Session
    issuer, subject = str(claims.get("iss") or "").strip(), str(claims.get("sub") or "").strip()
    if not issuer or not subject:
        return None
    row = _find(s, issuer, "sub", subject)
    email = str(claims.get("email") or "").strip().lower()
    # An address the provider says it has not verified could belong to anyone: map by subject instead.
    if row is None and email and claims.get("email_verified") is not False:
        row = _find(s, issuer, "email", email)
    return row


def sign_in_with_identity(claims: Mapping[str, Any]) -> tuple[Principal, str]:
    """Sign in the local user an identity (the provider's ID-token claims, as in ``st.user``) is mapped to;
    returns the principal and a session cookie value. Refuses unmapped identities and disabled users."""
    error: UnmappedIdentity | None = None
    found: tuple[Principal, int] | None = None
    issuer, subject = str(claims.get("iss") or ""), str(claims.get("sub") or "")
    email = str(claims.get("email") or "")
    with transaction() as s:
        row = _match(s, claims)
        user = s.get(User, row.user_id) if row is not None else None
        if row is None or user is None or not user.active:
            auditlog.append(s, actor=email or subject or "?", action="login.failed", subject=user.username if user else "",
                            details={"via": "sso", "issuer": issuer, "sub": subject, "email": email})
            who = f"{email} " if email else ""
            error = UnmappedIdentity(ERR_CLAIMS) if not issuer.strip() or not subject.strip() else UnmappedIdentity(
                f"the account {who}(issuer {issuer}, subject {subject}) has no access to the workbench: an "
                "administrator must map it to a user (python -m audit identities map)"
                if row is None else "this account's user is disabled; ask an administrator")
        else:
            auditlog.append(s, actor=user.username, action="login", subject=user.username,
                            details={"via": "sso", "issuer": issuer, "claim": row.claim})
            found = (Principal(user.username, user.role), row.id)
    if found is None:
        raise error or UnmappedIdentity(ERR_CLAIMS)
    principal, identity_id = found
    return principal, create_session(principal, via="sso", identity_id=identity_id)

