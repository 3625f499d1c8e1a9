"""Append-only, hash-chained audit log: record events, sign checkpoints of the chain with a key kept outside
the database, and verify that no row was edited, inserted, removed or rewritten (also against an exported head).

The chain alone catches an edited or missing row in the middle; a signed checkpoint ("row N has hash H")
catches what the chain cannot: a rewrite with recomputed hashes and a cut tail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from storage.db import audit_home
from storage.orm import AuditCheckpoint, AuditLogEntry, Setting, utcnow

GENESIS = "0" * 64
KEY_ENV = "AUDIT_LOG_KEY"
KEY_FILE = "audit-log.key"
MIN_ENV_KEY_CHARS = 32
CHECKPOINT_SETTING = "audit_log.checkpoint_every"
CHECKPOINT_EVERY = 50
# The verifier's bound, fixed here and never read from the database it checks: a signed checkpoint at least
# every MAX_CHECKPOINT_EVERY rows. The setting may only make checkpoints more frequent.
MAX_CHECKPOINT_EVERY = 50
# Events that always carry a signed checkpoint at their own row (reports, sign-offs, setting changes).
CHECKPOINTED_ACTIONS = ("report.generate", "report.sign", "setting.change")
RESTORE_HINT = ("restore the keys folder (AUDIT_HOME/keys) from the backup that `python -m audit backup` made "
                "(its BACKUP.json lists the keys it holds), or set AUDIT_LOG_KEY to the key in use")
# The first event of a checkpointed log: written by the migration that introduced checkpoints.
START_ACTIONS = ("log.genesis", "log.checkpoints.start")
# PostgreSQL advisory lock id that serialises appends (any constant unique to this application).
APPEND_LOCK_KEY = 0x61756469746C6F67


class LogKeyError(RuntimeError):
    """The checkpoint key cannot be read or is unsafe; the message says what to fix."""


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


# Column sizes of audit_log: longer values are cut with a marker that says how much was cut (a log row can
# never be removed, so nobody may write a megabyte into one by typing it as a username).
FIELD_LIMITS = {"actor": 80, "action": 60, "subject": 255}


def bounded(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` characters, else its start and a marker, ``limit`` characters in all."""
    value = "" if value is None else str(value)
    if len(value) <= limit:
        return value
    keep = limit
    while keep > 0 and keep + len(f"...[+{len(value) - keep} chars]") > limit:
        keep -= 1
    return (value[:keep] + f"...[+{len(value) - keep} chars]")[:limit]


def entry_hash(seq: int, at: str, actor: str, action: str, subject: str, details: str, prev: str) -> str:
    payload = canonical_json([seq, at, actor, action, subject, details, prev])
    return hashlib.sha256(payload.encode()).hexdigest()


# ------------------------------------------------------------------ the key (never in the database)

def key_path() -> Path:
    return audit_home() / "keys" / KEY_FILE


def load_key(*, create: bool = False) -> Optional[bytes]:
    """The HMAC key: ``AUDIT_LOG_KEY`` when set, else ``AUDIT_HOME/keys/audit-log.key`` (owner-only, created
    here on first use when ``create``). None when neither exists and ``create`` is false."""
    env = os.environ.get(KEY_ENV)
    if env:
        if len(env) < MIN_ENV_KEY_CHARS:
            raise LogKeyError(f"{KEY_ENV} must be at least {MIN_ENV_KEY_CHARS} characters")
        return env.encode()
    path = key_path()
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LogKeyError(f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run chmod 600 on it")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise LogKeyError(f"{path} does not hold a hex key") from None
    if len(key) < 32:
        raise LogKeyError(f"{path} holds a key shorter than 32 bytes")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic: two first users cannot end up with two keys
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"audit-log-key:" + key).hexdigest()[:16]


def checkpoint_signature(key: bytes, seq: int, row_hash: str, at: str) -> str:
    msg = canonical_json(["audit-checkpoint", seq, row_hash, at]).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ writing

def checkpoint_interval(session: Session) -> int:
    """How often append signs a checkpoint: the setting, capped at MAX_CHECKPOINT_EVERY whatever it says."""
    row = session.get(Setting, CHECKPOINT_SETTING)
    try:
        value = int(row.value) if row is not None else CHECKPOINT_EVERY
    except (TypeError, ValueError):
        value = CHECKPOINT_EVERY
    return min(max(value, 1), MAX_CHECKPOINT_EVERY)


def _newest_checkpoint(session: Session) -> Optional[AuditCheckpoint]:
    return session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)).first()


def _start_seq(session: Session) -> int:
    """The seq of the event from which the log is checkpointed (its genesis), 0 when there is none."""
    return int(session.scalar(select(func.min(AuditLogEntry.seq)).where(AuditLogEntry.action.in_(START_ACTIONS)))
               or 0)


def signing_key(session: Session, seq: int) -> bytes:
    """The key that signs the checkpoint of row ``seq``. Created only on a first run (no checkpoint was ever signed and
    the log is younger than one interval); a key that is missing, or is not the one that signed the stored
    checkpoints, is a LogKeyError naming the backup to restore: a new key would make every earlier
    checkpoint read as forged."""
    key = load_key(create=False)
    newest = _newest_checkpoint(session)
    if key is None:
        if newest is not None:
            raise LogKeyError(f"the audit-log key that signed the {count_checkpoints(session)} checkpoint(s) in the "
                              f"database (key id {newest.key_id}) is missing from {key_path()}; {RESTORE_HINT}")
        start = _start_seq(session)
        forced = session.scalar(select(func.count(AuditLogEntry.id)).where(
            AuditLogEntry.action.in_(CHECKPOINTED_ACTIONS), AuditLogEntry.seq > start, AuditLogEntry.seq < seq))
        if seq - start > MAX_CHECKPOINT_EVERY or forced:
            raise LogKeyError(f"the audit log is older than its first checkpoint could be, yet the database holds "
                              f"no checkpoint and {key_path()} is missing (checkpoints removed, key lost); "
                              f"{RESTORE_HINT}")
        key = load_key(create=True)
    elif newest is not None and newest.key_id != key_id(key):
        raise LogKeyError(f"the audit-log key in use (key id {key_id(key)}) is not the key that signed the "
                          f"checkpoints in the database (key id {newest.key_id}); {RESTORE_HINT}")
    return key


def write_checkpoint(session: Session, row: AuditLogEntry) -> AuditCheckpoint:
    """Sign "row ``row.seq`` has hash ``row.hash``" (once per row)."""
    existing = session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq == row.seq)).first()
    if existing is not None:
        return existing
    key = signing_key(session, row.seq)
    at = utcnow().isoformat()
    cp = AuditCheckpoint(seq=row.seq, hash=row.hash, at=at, key_id=key_id(key),
                         signature=checkpoint_signature(key, row.seq, row.hash, at))
    session.add(cp)
    session.flush()
    return cp


def append(session: Session, *, actor: str, action: str, subject: str = "", details: Any = None,
           checkpoint: bool = False) -> AuditLogEntry:
    """Add one entry chained to the newest; the caller's transaction commits it. A signed checkpoint is
    written with it every ``audit_log.checkpoint_every`` events (at most MAX_CHECKPOINT_EVERY), for the
    CHECKPOINTED_ACTIONS and whenever ``checkpoint`` is asked."""
    if session.get_bind().dialect.name == "postgresql":
        # Several job workers append at once: without a lock two transactions read the same head and the
        # second fails on its seq. SQLite needs none (transactions begin IMMEDIATE, one writer at a time).
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
    last = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(1)).first()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    at = utcnow().isoformat()
    det = canonical_json(details if details is not None else {})
    actor, action, subject = (bounded(v, FIELD_LIMITS[k]) for k, v in
                              (("actor", actor), ("action", action), ("subject", subject)))
    row = AuditLogEntry(
        seq=seq, at=at, actor=actor, action=action, subject=subject, details=det, prev_hash=prev,
        hash=entry_hash(seq, at, actor, action, subject, det, prev),
    )
    session.add(row)
    session.flush()
    # Counted from the newest checkpoint, not by seq modulo: a gap left under an older, longer interval closes
    # at the next event.
    newest = session.scalar(select(func.max(AuditCheckpoint.seq))) or 0
    if checkpoint or action in CHECKPOINTED_ACTIONS or seq - newest >= checkpoint_interval(session):
        write_checkpoint(session, row)
    return row


def head(session: Session) -> dict[str, Any]:
    """The newest row, signed (a checkpoint is written for it when none exists): what ``log-head`` exports."""
    last = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(1)).first()
    if last is None:
        raise ValueError("the audit log is empty; run `python -m audit migrate` first")
    cp = write_checkpoint(session, last)
    return {"seq": cp.seq, "hash": cp.hash, "at": cp.at, "key_id": cp.key_id, "signature": cp.signature}


def parse_anchor(text: str, *, source: str) -> dict[str, Any]:
    """Read an exported head; a file that is not one is a one-line ValueError naming it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not an audit-log head (invalid JSON at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not an audit-log head (expected a JSON object)")
    problems = []
    if not isinstance(data.get("seq"), int) or isinstance(data.get("seq"), bool) or data["seq"] < 1:
        problems.append("seq must be a positive integer")
    for name, size in (("hash", 64), ("signature", 64)):
        value = data.get(name)
        if not (isinstance(value, str) and len(value) == size and all(c in "0123456789abcdef" for c in value)):
            problems.append(f"{name} must be {size} hex digits")
    if not isinstance(data.get("at"), str):
        problems.append("at must be a timestamp string")
    if problems:
        raise ValueError(f"{source}: not an audit-log head ({'; '.join(problems)})")
    return data


# ------------------------------------------------------------------ verifying

@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problems: list[str]
    checkpoints: int = 0
    head_seq: Optional[int] = None
    anchored: bool = False


def verify(session: Session, *, anchor: Optional[dict[str, Any]] = None) -> ChainReport:
    """Walk the chain (edited rows: hash mismatch; inserted or deleted rows: broken links), then the signed
    checkpoints (a rewrite or a cut tail no longer matches), then the exported ``anchor`` when given."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    rows = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq)).all()
    if not rows:
        problems.append("the audit log is empty: a migrated database holds at least its genesis event, "
                        "so every row was deleted")
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
    by_seq = {r.seq: r for r in rows}
    head_seq = rows[-1].seq if rows else 0
    start = next((r.seq for r in rows if r.action in START_ACTIONS), None)
    if rows and start is None:
        problems.append("no genesis event (log.genesis): the oldest rows were deleted or the log was rebuilt")
    cps = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
    try:
        key = load_key(create=False)
    except LogKeyError as exc:
        key, problems = None, problems + [f"checkpoints cannot be verified: {exc}"]
    if key is None and (cps or anchor is not None) and not any(p.startswith("checkpoints cannot") for p in problems):
        problems.append(f"checkpoints cannot be verified: no audit-log key ({key_path()} or {KEY_ENV}); "
                        f"{RESTORE_HINT}")
    valid: set[int] = set()
    for cp in cps:
        if key is None:
            break
        if not hmac.compare_digest(cp.signature, checkpoint_signature(key, cp.seq, cp.hash, cp.at)):
            problems.append(f"checkpoint seq={cp.seq}: signature does not match (forged, or signed with another key)")
            continue
        row = by_seq.get(cp.seq)
        if row is None:
            where = "the newest rows were deleted" if cp.seq > head_seq else "a row was deleted"
            problems.append(f"checkpoint seq={cp.seq}: the log has no row seq={cp.seq} ({where})")
        elif row.hash != cp.hash:
            problems.append(f"row seq={cp.seq}: hash differs from the signed checkpoint (the chain was rewritten)")
        else:
            valid.add(cp.seq)
    if rows and not (key is None and cps):
        problems += _missing_checkpoints(rows, start or 0, head_seq, valid, key_missing=key is None)
    anchored = False
    if anchor is not None and key is not None:
        aseq = anchor["seq"]
        row = by_seq.get(aseq)
        if not hmac.compare_digest(anchor["signature"], checkpoint_signature(key, aseq, anchor["hash"], anchor["at"])):
            problems.append(f"anchor seq={aseq}: signature does not match this installation's key (not exported here, "
                            "or edited)")
        elif row is None:
            where = "the newest rows were deleted" if aseq > head_seq else "a row was deleted"
            problems.append(f"anchor seq={aseq}: the log has no row seq={aseq} ({where} since the head was exported)")
        elif row.hash != anchor["hash"]:
            problems.append(f"row seq={aseq}: hash differs from the exported head (the log was rewritten)")
        else:
            anchored = True
    return ChainReport(ok=not problems, checked=len(rows), problems=problems, checkpoints=len(cps),
                       head_seq=head_seq or None, anchored=anchored)


def _missing_checkpoints(rows: list[AuditLogEntry], start: int, head_seq: int, valid: set[int], *,
                         key_missing: bool) -> list[str]:
    """Where the log lacks a signed checkpoint the code always writes: one at least every MAX_CHECKPOINT_EVERY
    rows from its start, and one at every CHECKPOINTED_ACTIONS event. The bound is this module's constant,
    never a value read from the database being checked (that database may have been rewritten)."""
    problems: list[str] = []
    why = ("no audit-log key and no checkpoint: the key was lost or removed with the checkpoints; " + RESTORE_HINT
           if key_missing else "checkpoints were removed or the log was rewritten")
    base = start
    for seq in sorted(s for s in valid if s > start):
        if seq - base > MAX_CHECKPOINT_EVERY:
            problems.append(f"rows seq={base + 1}..{seq}: no signed checkpoint over {seq - base} rows, more than the "
                            f"{MAX_CHECKPOINT_EVERY} the log is checkpointed at ({why})")
        base = seq
    if head_seq - base >= MAX_CHECKPOINT_EVERY:
        problems.append(f"row seq={head_seq}: {head_seq - base} rows after the newest signed checkpoint (seq={base}), "
                        f"more than the checkpoint interval {MAX_CHECKPOINT_EVERY} allows ({why})")
    for row in rows:
        if row.seq > start and row.action in CHECKPOINTED_ACTIONS and row.seq not in valid:
            problems.append(f"row seq={row.seq} ({row.action}): this event is always checkpointed, but no valid "
                            f"signed checkpoint holds it ({why})")
    return problems


def count_checkpoints(session: Session) -> int:
    return int(session.scalar(select(func.count(AuditCheckpoint.id))) or 0)
