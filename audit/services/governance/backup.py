"""Consistent backups of the database (with the audit log's signed checkpoints), the artifact store and the
keys folder while the app keeps running. The backup folder has AUDIT_HOME's layout: point AUDIT_HOME at it to
restore."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from storage.artifacts import ArtifactStore, sha256_file
from storage import auditlog
from storage.db import audit_home, database_url


@dataclass
class BackupSummary:
    path: Path
    database_bytes: int
    artifacts: int
    seconds: float
    keys: int = 0


def backup(dest: str | Path) -> BackupSummary:
    """Copy the database with SQLite's online backup API (a consistent snapshot even under writes), then
    the artifacts it can reference. Artifacts are immutable and written by atomic rename, so a file that
    exists is complete; each copy is verified against its hash."""
    start = time.perf_counter()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"backup folder {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    url = database_url()
    if not url.startswith("sqlite"):
        raise ValueError(f"backup of {urlparse(url).scheme} databases is done with the server's own tools "
                         "(pg_dump for PostgreSQL); this command copies SQLite databases")
    db_path = url.split("sqlite:///", 1)[1]
    if not Path(db_path).exists():
        raise ValueError(f"no database at {db_path}")
    # The copy holds password and session-token hashes too: owner-only before SQLite writes a byte to it.
    os.close(os.open(dest / "audit.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(db_path, timeout=30)
    out = sqlite3.connect(dest / "audit.db")
    try:
        src.backup(out)
    finally:
        out.close()
        src.close()
    store = ArtifactStore()
    copied = 0
    target_root = dest / "artifacts"
    for path in sorted(store.root.rglob("*")):
        if not path.is_file() or path.name.startswith(".tmp-"):
            continue
        digest = path.name
        target = target_root / path.relative_to(store.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        if sha256_file(target) != digest:
            raise RuntimeError(f"artifact {digest} changed while it was copied; run the backup again")
        copied += 1
    keys = _copy_keys(audit_home() / "keys", dest / "keys")
    from_env = [name for name in (auditlog.KEY_ENV, "AUDIT_SESSION_KEY") if os.environ.get(name)]
    summary = BackupSummary(dest, (dest / "audit.db").stat().st_size, copied, time.perf_counter() - start, len(keys))
    (dest / "BACKUP.json").write_text(json.dumps({
        "database_url": "sqlite", "artifacts": copied, "keys": keys,
        # A key given in the environment is not in any file: keep it with the backup yourself.
        "keys_from_environment_not_copied": from_env,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return summary


def _copy_keys(src: Path, dst: Path) -> list[str]:
    """Copy the keys (audit-log checkpoint key, session key) owner-only: the folder 0700, each file 0600, also
    while it is written (created with that mode, never copied with wider permissions first)."""
    if not src.is_dir():
        return []
    dst.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dst, 0o700)
    names = []
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.name.startswith(".tmp-"):
            continue
        fd = os.open(dst / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(path.read_bytes())
        names.append(path.name)
    return names
