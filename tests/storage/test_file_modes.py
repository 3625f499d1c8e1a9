"""Issue 22: the SQLite database (password and session-token hashes) and the keys folder are owner-only,
whatever the umask, for a new installation, an older one whose file was readable by others, and a backup."""

from __future__ import annotations

import os
import stat

import pytest

from audit.services.governance.auth import create_user
from audit.services.governance.sessions import create_session
from storage import auditlog
from storage.db import migrate, transaction


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def open_umask():
    old = os.umask(0o022)  # the common default, under which files are created 644
    yield
    os.umask(old)


def test_a_new_database_and_the_keys_folder_are_owner_only(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "home"
    monkeypatch.setenv("AUDIT_HOME", str(home))
    monkeypatch.delenv("AUDIT_DB_URL", raising=False)
    monkeypatch.delenv(auditlog.KEY_ENV, raising=False)
    migrate()
    assert _mode(home / "audit.db") == 0o600
    user = create_user("ann", "ann-password-1", "auditor")
    create_session(user)
    with transaction() as s:
        auditlog.head(s)  # signs a checkpoint: the log key is created
    for name in ("audit.db-wal", "audit.db-shm"):
        if (home / name).exists():
            assert _mode(home / name) == 0o600, name
    assert _mode(home / "keys") == 0o700
    assert {_mode(p) for p in (home / "keys").iterdir()} == {0o600}


def test_an_older_world_readable_database_is_narrowed(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "home"
    home.mkdir()
    (home / "audit.db").touch(mode=0o644)
    os.chmod(home / "audit.db", 0o644)
    monkeypatch.setenv("AUDIT_HOME", str(home))
    monkeypatch.delenv("AUDIT_DB_URL", raising=False)
    migrate()
    assert _mode(home / "audit.db") == 0o600


def test_a_backup_copy_of_the_database_is_owner_only(audit_home, tmp_path, open_umask):
    from audit.services.governance.backup import backup

    summary = backup(tmp_path / "backup")
    assert _mode(summary.path / "audit.db") == 0o600
