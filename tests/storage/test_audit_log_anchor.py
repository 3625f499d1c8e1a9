"""Tail truncation, whole-chain rewrites and an empty log are detected by the signed checkpoints and an
exported head; an untouched log verifies."""

from __future__ import annotations

import json
import os
import stat

import pytest
from sqlalchemy import select, text

from audit.services.governance.audit_trail import log_head, verify_log
from storage import auditlog
from storage.db import get_engine, transaction
from storage.orm import AuditLogEntry


def _log(n: int, *, checkpoint_last: bool = False) -> None:
    with transaction() as s:
        for i in range(n):
            auditlog.append(s, actor="alice", action="test", subject=f"s{i}", details={"i": i},
                            checkpoint=checkpoint_last and i == n - 1)


def _rewrite_chain(drop_from: int | None = None, actor: str = "mallory") -> None:
    """What an attacker with write access to the database can do: change rows and recompute every hash."""
    with transaction() as s:
        rows = s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq)).all()
        prev = auditlog.GENESIS
        for r in rows:
            if drop_from is not None and r.seq >= drop_from:
                s.delete(r)
                continue
            if r.seq > 1:
                r.actor = actor
            r.prev_hash = prev
            r.hash = auditlog.entry_hash(r.seq, r.at, r.actor, r.action, r.subject, r.details, prev)
            prev = r.hash


def test_untouched_log_with_checkpoints_verifies(audit_home):
    _log(5, checkpoint_last=True)
    rep = verify_log()
    assert rep.ok, rep.problems
    assert rep.checked == 6 and rep.checkpoints >= 1


def test_key_file_is_owner_only(audit_home):
    _log(1, checkpoint_last=True)
    mode = stat.S_IMODE(os.stat(auditlog.key_path()).st_mode)
    assert mode == 0o600


def test_deleted_newest_rows_are_detected_by_the_checkpoint(audit_home):
    _log(6, checkpoint_last=True)
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 5"))
    rep = verify_log()
    assert not rep.ok
    assert any("newest rows were deleted" in p for p in rep.problems), rep.problems


def test_whole_chain_rewritten_with_recomputed_hashes_is_detected(audit_home):
    _log(4, checkpoint_last=True)
    assert verify_log().ok
    _rewrite_chain()
    rep = verify_log()
    assert not rep.ok and any("checkpoint" in p for p in rep.problems), rep.problems


def test_exported_head_detects_a_cut_tail_without_checkpoints(audit_home, tmp_path):
    _log(3)
    anchor = tmp_path / "head.json"
    anchor.write_text(json.dumps(log_head()))
    _log(2)
    assert verify_log(anchor_file=anchor).ok
    with transaction() as s:
        head_seq = json.loads(anchor.read_text())["seq"]
        for r in s.scalars(select(AuditLogEntry).where(AuditLogEntry.seq >= head_seq)).all():
            s.delete(r)
    # Also drop the checkpoints, as an attacker would, so only the exported head can tell.
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    rep = verify_log(anchor_file=anchor)
    assert not rep.ok and any("anchor" in p or "head" in p for p in rep.problems), rep.problems


def test_empty_log_fails_verification(audit_home):
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    rep = verify_log()
    assert not rep.ok and any("empty" in p for p in rep.problems), rep.problems


def test_a_file_that_is_not_a_head_is_one_clear_error(audit_home, tmp_path):
    bad = tmp_path / "head.json"
    bad.write_text("not json")
    with pytest.raises(ValueError) as exc:
        verify_log(anchor_file=bad)
    assert "head.json" in str(exc.value) and "\n" not in str(exc.value)
