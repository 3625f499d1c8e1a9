"""Issue 22, hole 3: a rewritten audit log must not verify as intact because the checked database says
checkpoints are rare, and a lost signing key must be an error that names the backup, never a new key."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select, text

from audit.cli import main
from audit.services.governance.audit_trail import verify_log
from audit.services.governance.principals import SYSTEM
from audit.services.governance.settings import CHECKPOINT_EVERY, set_setting
from storage import auditlog
from storage.db import get_engine, transaction
from storage.orm import AuditLogEntry, Setting


def _events(n: int, action: str = "test") -> None:
    with transaction() as s:
        for i in range(n):
            auditlog.append(s, actor="alice", action=action, subject=f"s{i}", details={"i": i})


def _rewrite(seq: int, actor: str = "mallory") -> None:
    """Edit one row and recompute every hash after it, as someone with write access to the database can."""
    with transaction() as s:
        prev = auditlog.GENESIS
        for r in s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq)).all():
            if r.seq == seq:
                r.actor = actor
            r.prev_hash = prev
            r.hash = auditlog.entry_hash(r.seq, r.at, r.actor, r.action, r.subject, r.details, prev)
            prev = r.hash


def _claim_rare_checkpoints() -> None:
    """Delete every checkpoint and say in the checked database that they come every 1000 events."""
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    with transaction() as s:
        row = s.get(Setting, auditlog.CHECKPOINT_SETTING)
        if row is None:
            s.add(Setting(key=auditlog.CHECKPOINT_SETTING, value=1000, updated_by="mallory"))
        else:
            row.value = 1000


def test_the_issue_replay_edit_recompute_drop_checkpoints_fails(audit_home, capsys):
    _events(120)
    assert main(["verify-log"]) == 0
    capsys.readouterr()
    _rewrite(7)
    _claim_rare_checkpoints()
    assert main(["verify-log"]) == 1
    err = capsys.readouterr().err
    assert "TAMPERED" in err and "checkpoint" in err


def test_a_short_log_whose_report_event_lost_its_checkpoint_fails(audit_home):
    """Fewer rows than the interval, but a setting change always carries a checkpoint: deleting it shows."""
    set_setting(CHECKPOINT_EVERY, 20, actor=SYSTEM)
    _events(3)
    assert verify_log().ok
    _rewrite(2)
    _claim_rare_checkpoints()
    rep = verify_log()
    assert not rep.ok and any("setting.change" in p for p in rep.problems), rep.problems


def test_the_interval_setting_may_only_make_checkpoints_more_frequent(audit_home):
    with pytest.raises(ValueError, match="from 1 to 50"):
        set_setting(CHECKPOINT_EVERY, 1000, actor=SYSTEM)
    with transaction() as s:  # written behind the service's back: still capped by the code's constant
        s.add(Setting(key=auditlog.CHECKPOINT_SETTING, value=1000, updated_by="mallory"))
    _events(60)
    assert auditlog.CHECKPOINT_EVERY <= auditlog.MAX_CHECKPOINT_EVERY == 50
    rep = verify_log()
    assert rep.ok and rep.checkpoints >= 1, rep.problems


def test_a_lost_key_is_an_error_naming_the_backup_not_a_new_key(audit_home, monkeypatch):
    monkeypatch.delenv(auditlog.KEY_ENV, raising=False)
    _events(60)  # at least one checkpoint signed
    before = auditlog.key_path().read_bytes()
    shutil.rmtree(audit_home / "keys")
    with pytest.raises(auditlog.LogKeyError) as exc:
        with transaction() as s:
            auditlog.append(s, actor="alice", action="test", subject="x", checkpoint=True)
    msg = str(exc.value)
    assert "python -m audit backup" in msg and "keys" in msg and "\n" not in msg
    assert not auditlog.key_path().exists(), "a new key was created"
    rep = verify_log()
    assert not rep.ok and any("no audit-log key" in p and "backup" in p for p in rep.problems), rep.problems
    # Restoring the key from a backup makes it work again.
    auditlog.key_path().parent.mkdir(mode=0o700, parents=True)
    auditlog.key_path().write_bytes(before)
    auditlog.key_path().chmod(0o600)
    _events(1)
    assert verify_log().ok


def test_a_replaced_key_refuses_to_sign(audit_home, monkeypatch):
    monkeypatch.delenv(auditlog.KEY_ENV, raising=False)
    _events(55)
    auditlog.key_path().unlink()
    monkeypatch.setenv(auditlog.KEY_ENV, "x" * 40)  # another key than the one that signed the checkpoints
    with pytest.raises(auditlog.LogKeyError, match="not the key that signed"):
        _events(1, action="report.sign")


def test_keys_deleted_with_the_checkpoints_is_not_a_first_run(audit_home, monkeypatch):
    monkeypatch.delenv(auditlog.KEY_ENV, raising=False)
    _events(80)
    _rewrite(3)
    shutil.rmtree(audit_home / "keys")
    _claim_rare_checkpoints()
    rep = verify_log()
    assert not rep.ok, "a long log with no key and no checkpoint verified"
    with pytest.raises(auditlog.LogKeyError, match="python -m audit backup"):
        _events(1, action="report.sign")
    assert not auditlog.key_path().exists()


def test_first_run_still_creates_the_key(audit_home, monkeypatch):
    monkeypatch.delenv(auditlog.KEY_ENV, raising=False)
    assert not auditlog.key_path().exists()
    _events(2)
    with transaction() as s:
        auditlog.head(s)
    assert auditlog.key_path().exists() and verify_log().ok
