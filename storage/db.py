"""Database engine, sessions and schema migration for the workbench.

SQLite under ``AUDIT_HOME`` by default (WAL, busy timeout, foreign keys); ``AUDIT_DB_URL`` selects another.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def audit_home() -> Path:
    """The folder that holds all state (database and artifacts)."""
    home = Path(os.environ.get("AUDIT_HOME", "var")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    url = os.environ.get("AUDIT_DB_URL")
    if url:
        return url
    return f"sqlite:///{audit_home() / 'audit.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _private_sqlite_file(url: str) -> None:
    """The SQLite file holds password and session-token hashes: create it owner-only (SQLite gives its -wal and
    -shm files the database file's mode), and narrow one that an older version created readable by others."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours (a shared read-only copy): leave it as its owner set it
            continue


def make_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # Take the write lock at BEGIN so two writers queue on busy_timeout instead of failing
        # with "database is locked" when a reader upgrades to a writer mid-transaction.
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # noqa: ANN001
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _no_pysqlite_autobegin(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine() -> Engine:
    return _engine_for(database_url())


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error. Artifact files first
    written inside the block are removed on a rollback, and kept (claimed) once the commit succeeds."""
    from storage.artifacts import claim_written, discard_on_failure

    session = session_factory(engine)()
    try:
        with discard_on_failure():
            yield session
            session.commit()
        claim_written()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None):  # noqa: ANN201 - alembic type imported lazily
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return cfg


def migrate(url: str | None = None) -> None:
    """Bring the schema to the newest migration (creates it in an empty database)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
