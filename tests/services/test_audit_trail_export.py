"""Issue 22, hole 6 (CSV) and the audit trail's role checks: every exported cell that a spreadsheet would run
as a formula starts with an apostrophe; only administrators read the trail, auditors and administrators verify
it and export its head, viewers do neither."""

from __future__ import annotations

import csv
import io

import pytest

from audit.services.governance import audit_trail, throttle
from audit.services.governance.auth import AuthError, authenticate
from audit.services.governance.principals import PermissionDenied, Principal
from storage import auditlog
from storage.db import transaction

ADMIN, AUDITOR, VIEWER = Principal("ada", "admin"), Principal("ann", "auditor"), Principal("vic", "viewer")
PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def test_every_formula_prefix_is_neutralised_in_every_cell(audit_home):
    throttle.reset()
    with pytest.raises(AuthError):
        authenticate('=HYPERLINK("http://evil.example","x")', "whatever-password", client="203.0.113.5")
    with transaction() as s:
        for p in PREFIXES:
            auditlog.append(s, actor=f"{p}actor", action=f"{p}action", subject=f"{p}1+1", details={"k": f"{p}v"})
    rows = list(csv.reader(io.StringIO(audit_trail.export_csv(1000, actor=ADMIN), newline="")))
    header, body = rows[0], rows[1:]
    assert header == list(audit_trail.EXPORT_COLUMNS)
    cells = [cell for row in body for cell in row]
    assert not [c for c in cells if c.startswith(PREFIXES)], [c for c in cells if c.startswith(PREFIXES)]
    assert "'=HYPERLINK(\"http://evil.example\",\"x\")" in cells
    for p in PREFIXES:
        assert f"'{p}actor" in cells and f"'{p}1+1" in cells
    assert audit_trail.csv_cell("plain") == "plain" and audit_trail.csv_cell(12) == "12"


@pytest.mark.parametrize("call, allowed", [
    (lambda a: audit_trail.recent_entries(5, actor=a), {"admin"}),
    (lambda a: audit_trail.export_rows(5, actor=a), {"admin"}),
    (lambda a: audit_trail.export_csv(5, actor=a), {"admin"}),
    (lambda a: audit_trail.verify_log(actor=a), {"admin", "auditor"}),
    (lambda a: audit_trail.log_head(actor=a), {"admin", "auditor"}),
])
def test_who_reads_verifies_and_anchors_the_trail(audit_home, call, allowed):
    for who in (ADMIN, AUDITOR, VIEWER):
        if who.role in allowed:
            call(who)
        else:
            with pytest.raises(PermissionDenied):
                call(who)
