"""Append-only, hash-chained audit log: record events and verify that no row was edited or removed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.orm import AuditLogEntry, utcnow

GENESIS = "0" * 64


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(seq: int, at: str, actor: str, action: str, subject: str, details: str, prev: str) -> str:
    payload = canonical_json([seq, at, actor, action, subject, details, prev])
    return hashlib.sha256(payload.encode()).hexdigest()


def append(session: Session, *, actor: str, action: str, subject: str = "", details: Any = None) -> AuditLogEntry:
    """Add one entry chained to the newest; the caller's transaction commits it."""
    last = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(1)).first()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    at = utcnow().isoformat()
    det = canonical_json(details if details is not None else {})
    row = AuditLogEntry(
        seq=seq, at=at, actor=actor, action=action, subject=subject, details=det, prev_hash=prev,
        hash=entry_hash(seq, at, actor, action, subject, det, prev),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problems: list[str]


def verify(session: Session) -> ChainReport:
    """Walk the chain; report edited rows (hash mismatch), and inserted or deleted rows (broken links)."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    rows = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq)).all()
    for row in rows:
        if row.seq != expected_seq:
            problems.append(f"row seq={row.seq}: expected seq {expected_seq} (a row was deleted or inserted)")
        if row.prev_hash != prev:
            problems.append(f"row seq={row.seq}: link to the previous row is broken (a row before it was deleted, inserted or edited)")
        actual = entry_hash(row.seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash)
        if actual != row.hash:
            problems.append(f"row seq={row.seq}: content does not match its hash (the row was edited)")
        prev = row.hash
        expected_seq = row.seq + 1
    return ChainReport(ok=not problems, checked=len(rows), problems=problems)
