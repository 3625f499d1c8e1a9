"""Reading, verifying and anchoring the hash-chained audit log (signed checkpoints, exported heads), and
exporting it as CSV that a spreadsheet cannot execute.

The trail holds failed sign-in usernames (sometimes a password typed in the wrong field): only administrators
read it ("read_trail"); auditors and administrators verify it and export its signed head ("verify_log")."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select

from audit.services.governance.principals import SYSTEM, Principal, require
from storage import auditlog
from storage.db import migrate, transaction
from storage.orm import AuditLogEntry


# A spreadsheet runs a cell that starts with one of these as a formula (or, for tab and CR, may shift it
# into one); such a cell is written with a leading apostrophe, which spreadsheets show as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ("seq", "at", "actor", "action", "subject", "details")


def verify_log(*, anchor_file: Optional[str | Path] = None, actor: Principal = SYSTEM) -> auditlog.ChainReport:
    """Verify the chain and its checkpoints; with ``anchor_file`` (a head exported by ``log_head``) also that
    the log still holds that head unchanged. A file that is not a head is a one-line ValueError."""
    require(actor, "verify_log")
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


def log_head(*, actor: Principal = SYSTEM) -> dict[str, Any]:
    """The newest row's seq and hash with its checkpoint signature: keep it outside this machine and pass it
    to ``verify-log --anchor`` later to prove the log was not cut or rewritten up to it."""
    require(actor, "verify_log")
    migrate()
    with transaction() as s:
        return auditlog.head(s)


def recent_entries(limit: int = 100, *, actor: Principal = SYSTEM) -> list[dict[str, Any]]:
    """The newest ``limit`` entries as stored (administrators only)."""
    require(actor, "read_trail")
    with transaction() as s:
        rows = s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(limit)).all()
        return [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                 "details": r.details} for r in rows]


def csv_cell(value: Any) -> str:
    """``value`` as text, with a leading apostrophe when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_rows(limit: int = 100, *, actor: Principal = SYSTEM) -> list[dict[str, str]]:
    """The newest entries with every cell made safe for a spreadsheet: what a page shows (its table's own CSV
    download exports exactly these) and what :func:`export_csv` writes."""
    return [{k: csv_cell(e[k]) for k in EXPORT_COLUMNS} for e in recent_entries(limit, actor=actor)]


def export_csv(limit: int = 100, *, actor: Principal = SYSTEM) -> str:
    """The newest entries as CSV, every cell neutralised (see :func:`csv_cell`)."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)  # RFC 4180: CRLF rows, CR and LF in cells quoted
    writer.writeheader()
    writer.writerows(export_rows(limit, actor=actor))
    return out.getvalue()
