"""Governance on the command line: `log-head > FILE` and `verify-log --anchor FILE`, identities and sessions
for admins, and a backup that carries the keys and checkpoints so that the restored copy verifies against
the exported head."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from audit.cli import main
from audit.services.governance.auth import create_user
from audit.services.governance.principals import Principal
from storage import auditlog
from storage.db import get_engine, transaction

ROOT = Path(__file__).resolve().parents[1]


def _events(n: int) -> None:
    with transaction() as s:
        for i in range(n):
            auditlog.append(s, actor="alice", action="test", subject=f"s{i}", details={"i": i})


def _export_head(capsys, path: Path) -> dict:
    assert main(["log-head"]) == 0
    path.write_text(capsys.readouterr().out)
    return json.loads(path.read_text())


def test_log_head_is_exported_through_a_shell_redirect(audit_home, tmp_path):
    _events(3)
    anchor = tmp_path / "head.json"
    env = dict(os.environ, AUDIT_HOME=str(audit_home))
    with anchor.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "audit", "log-head"], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    head = json.loads(anchor.read_text())
    with transaction() as s:
        newest = s.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")).one()
    assert (head["seq"], head["hash"]) == (newest.seq, newest.hash) and len(head["signature"]) == 64


def test_verify_log_against_the_exported_head(audit_home, tmp_path, capsys):
    _events(3)
    anchor = tmp_path / "head.json"
    head = _export_head(capsys, anchor)
    _events(2)  # growing after the export is fine
    assert main(["verify-log", "--anchor", str(anchor)]) == 0
    assert "holds the exported head" in capsys.readouterr().out
    with get_engine().begin() as conn:  # cut the tail back past the exported head, checkpoints too
        conn.execute(text("DELETE FROM audit_log WHERE seq >= :s"), {"s": head["seq"]})
        conn.execute(text("DELETE FROM audit_checkpoints WHERE seq >= :s"), {"s": head["seq"]})
    assert main(["verify-log", "--anchor", str(anchor)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audit log TAMPERED") and f"seq={head['seq']}" in err[0]


def test_a_bad_anchor_file_is_a_one_line_error(audit_home, tmp_path, capsys):
    bad = tmp_path / "head.json"
    bad.write_text("{\"seq\": 1}")
    assert main(["verify-log", "--anchor", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an audit-log head" in err[0]
    assert main(["verify-log", "--anchor", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the anchor" in capsys.readouterr().err


def test_identities_map_list_unmap(audit_home, capsys):
    create_user("ann", "ann-pass-1234", "auditor")
    iss = "https://id.example.org"
    assert main(["identities", "map", "--issuer", iss, "--subject", "s-42", "--user", "ann"]) == 0
    assert "now signs in as ann" in capsys.readouterr().out
    assert main(["identities", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["claim"], r["value"], r["username"]) for r in rows] == [("sub", "s-42", "ann")]
    assert main(["identities", "map", "--issuer", iss, "--user", "ann"]) == 2
    assert "exactly one of --subject or --email" in capsys.readouterr().err
    assert main(["identities", "unmap", "--issuer", iss, "--subject", "s-42"]) == 0
    assert main(["identities", "list"]) == 0
    assert "no single sign-on identity" in capsys.readouterr().out


def test_sessions_list_and_revoke(audit_home, capsys):
    from audit.services.governance.sessions import create_session, resolve_session

    create_user("ann", "ann-pass-1234", "auditor")
    cookie = create_session(Principal("ann", "auditor"))
    assert main(["sessions", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["username"] for r in rows] == ["ann"]
    assert main(["sessions", "revoke", "--id", str(rows[0]["id"])]) == 0
    assert resolve_session(cookie) is None
    assert main(["sessions", "revoke", "--id", str(rows[0]["id"])]) == 0
    assert "already ended" in capsys.readouterr().out
    assert main(["sessions", "revoke"]) == 2
    assert "exactly one of --id or --user" in capsys.readouterr().err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_restored_backup_verifies_against_the_exported_head(audit_home, tmp_path, capsys, monkeypatch):
    from audit.services.governance.sessions import create_session

    create_user("ann", "ann-pass-1234", "auditor")
    create_session(Principal("ann", "auditor"))  # writes the session key
    _events(4)
    anchor = tmp_path / "head.json"
    head = _export_head(capsys, anchor)
    dest = tmp_path / "backup"
    assert main(["backup", str(dest)]) == 0
    assert "2 key file(s)" in capsys.readouterr().out
    assert _mode(dest / "keys") == 0o700
    for name in ("audit-log.key", "session.key"):
        assert _mode(dest / "keys" / name) == 0o600
        assert (dest / "keys" / name).read_bytes() == (audit_home / "keys" / name).read_bytes()
    # Restore: AUDIT_HOME pointed at the backup folder (same layout), in a fresh process.
    env = dict(os.environ, AUDIT_HOME=str(dest))
    ok = subprocess.run([sys.executable, "-m", "audit", "verify-log", "--anchor", str(anchor)], cwd=ROOT, env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "holds the exported head" in ok.stdout and "0 signed checkpoint" not in ok.stdout
    # The same check fails on a restored copy whose newest rows were cut (it can fail).
    monkeypatch.setenv("AUDIT_HOME", str(dest))
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= :s"), {"s": head["seq"]})
        conn.execute(text("DELETE FROM audit_checkpoints WHERE seq >= :s"), {"s": head["seq"]})
    bad = subprocess.run([sys.executable, "-m", "audit", "verify-log", "--anchor", str(anchor)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "TAMPERED" in bad.stderr


def test_a_backup_without_the_key_cannot_vouch_for_its_checkpoints(audit_home, tmp_path, capsys):
    _events(2)
    anchor = tmp_path / "head.json"
    _export_head(capsys, anchor)
    dest = tmp_path / "backup"
    assert main(["backup", str(dest)]) == 0
    (dest / "keys" / "audit-log.key").unlink()
    env = dict(os.environ, AUDIT_HOME=str(dest))
    env.pop("AUDIT_LOG_KEY", None)
    res = subprocess.run([sys.executable, "-m", "audit", "verify-log", "--anchor", str(anchor)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "no audit-log key" in res.stderr

