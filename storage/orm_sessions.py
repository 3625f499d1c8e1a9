"""Tables of sign-in sessions and of single sign-on identities mapped to local users.

A session row holds only the SHA-256 of its token; the token itself lives in the browser's cookie.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.orm import Base, utcnow

IDENTITY_CLAIMS = ("sub", "email")


class ExternalIdentity(Base):
    """An identity of an OpenID Connect provider (issuer + subject, or issuer + e-mail) that signs in as a
    local user and so takes that user's role."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("issuer", "claim", "value", name="uq_identities_issuer_claim_value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    claim: Mapped[str] = mapped_column(String(8))  # one of IDENTITY_CLAIMS
    value: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignInSession(Base):
    """One signed-in browser: valid until it expires or is revoked (sign-out, password reset, user disabled,
    identity unmapped)."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    via: Mapped[str] = mapped_column(String(16))  # "password" or "sso"
    identity_id: Mapped[Optional[int]] = mapped_column(ForeignKey("identities.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[Optional[str]] = mapped_column(String(40))
