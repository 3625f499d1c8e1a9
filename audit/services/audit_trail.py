"""Reading and verifying the hash-chained audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage import auditlog
from storage.db import migrate, transaction
from storage.orm import AuditLogEntry


def verify_log() -> auditlog.ChainReport:
    migrate()
    with transaction() as s:
        return auditlog.verify(s)


def recent_entries(limit: int = 100) -> list[dict[str, Any]]:
    with transaction() as s:
        rows = s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(limit)).all()
        return [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                 "details": r.details} for r in rows]
