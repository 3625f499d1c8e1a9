"""Reading, verifying and anchoring the hash-chained audit log (signed checkpoints, exported heads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select

from storage import auditlog
from storage.db import migrate, transaction
from storage.orm import AuditLogEntry


def verify_log(*, anchor_file: Optional[str | Path] = None) -> auditlog.ChainReport:
    """Verify the chain and its checkpoints; with ``anchor_file`` (a head exported by ``log_head``) also that
    the log still holds that head unchanged. A file that is not a head is a one-line ValueError."""
    anchor = None
    if anchor_file is not None:
        path = Path(anchor_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the anchor ({exc.strerror})") from None
        anchor = auditlog.parse_anchor(text, source=str(path))
    migrate()
    with transaction() as s:
        return auditlog.verify(s, anchor=anchor)


def log_head() -> dict[str, Any]:
    """The newest row's seq and hash with its checkpoint signature: keep it outside this machine and pass it
    to ``verify-log --anchor`` later to prove the log was not cut or rewritten up to it."""
    migrate()
    with transaction() as s:
        return auditlog.head(s)


def recent_entries(limit: int = 100) -> list[dict[str, Any]]:
    with transaction() as s:
        rows = s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(limit)).all()
        return [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                 "details": r.details} for r in rows]
