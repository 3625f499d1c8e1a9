"""Storage: migrations from empty, ORM round trips, the artifact store and the audit log's hash chain."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from storage import auditlog
from storage.artifacts import ArtifactIntegrityError, ArtifactStore
from storage.db import get_engine, transaction
from storage.orm import AuditLogEntry, Explanation, ModelFamily, ModelVersion
from storage.repositories import ExplanationRepository, ModelRepository

EXPECTED_TABLES = {"users", "model_families", "model_versions", "datasets", "samples", "runs", "explanations",
                   "analysis_results", "reports", "signoffs", "audit_log", "alembic_version", "jobs",
                   "audit_checkpoints", "settings", "sessions", "identities"}


def _version(fam: ModelFamily, v: str) -> ModelVersion:
    return ModelVersion(family_id=fam.id, version=v, artifact_sha256="a" * 64, format="state_dict",
                        architecture="small_cnn", labels=["a", "b"], created_by="t")


def test_migration_from_empty_creates_every_table(db):
    tables = set(inspect(get_engine()).get_table_names())
    assert EXPECTED_TABLES <= tables
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0010"


def test_sqlite_runs_with_wal_and_foreign_keys(audit_home):
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_model_version_round_trip_and_uniqueness(db):
    with transaction() as s:
        repo = ModelRepository(s)
        fam = repo.get_or_create_family("fam", "image-classification")
        repo.add_version(_version(fam, "1"))
    with transaction() as s:
        row = ModelRepository(s).version("fam", "1")
        assert row is not None and row.labels == ["a", "b"] and row.family.name == "fam"
    with pytest.raises(IntegrityError):
        with transaction() as s:
            fam = ModelRepository(s).family("fam")
            ModelRepository(s).add_version(_version(fam, "1"))


def test_repositories_do_not_commit(db):
    from storage.db import session_factory

    s = session_factory()()
    ModelRepository(s).get_or_create_family("uncommitted", "image-classification")
    s.rollback()
    s.close()
    with transaction() as s2:
        assert ModelRepository(s2).family("uncommitted") is None


def test_foreign_keys_are_enforced(db):
    with pytest.raises(IntegrityError):
        with transaction() as s:
            s.add(ModelVersion(family_id=999, version="1", artifact_sha256="a" * 64, format="x", architecture="x",
                               labels=["a"], created_by="t"))


def test_explanation_key_is_unique(db):
    with transaction() as s:
        fam = ModelRepository(s).get_or_create_family("fam", "image-classification")
        ver = ModelRepository(s).add_version(_version(fam, "1"))
        vid = ver.id
        row = dict(model_version_id=vid, sample_sha256="b" * 64, method="gradcam", target=3, params_sha256="c" * 64,
                   attribution_sha256="d" * 64, attribution_shape=[32, 32], model_output=[0.1, 0.9])
        ExplanationRepository(s).add(Explanation(**row))
    with transaction() as s:
        found = ExplanationRepository(s).find(model_version_id=vid, sample_sha256="b" * 64, method="gradcam",
                                              target=3, params_sha256="c" * 64)
        assert found is not None and found.attribution_shape == [32, 32]
    with pytest.raises(IntegrityError):
        with transaction() as s:
            ExplanationRepository(s).add(Explanation(**row))


def test_artifact_store_round_trip_and_hash_mismatch(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    digest = store.put_array(arr)
    assert np.array_equal(store.get_array(digest), arr)
    assert store.put_array(arr) == digest  # content-addressed: same bytes, same key
    path = store.path(digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        store.get_bytes(digest)
    with pytest.raises(FileNotFoundError):
        store.get_bytes("f" * 64)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def _log_three() -> None:
    with transaction() as s:
        for i in range(3):
            auditlog.append(s, actor="alice", action="test", subject=f"s{i}", details={"i": i})


def test_audit_log_chain_verifies(db):
    _log_three()
    with transaction() as s:
        report = auditlog.verify(s)
    assert report.ok and report.checked == 4  # the genesis event written by the migration, then three


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert"])
def test_audit_log_tampering_is_caught(db, tamper):
    _log_three()
    with get_engine().begin() as conn:
        if tamper == "edit":
            conn.execute(text("UPDATE audit_log SET actor='mallory' WHERE seq=2"))
        elif tamper == "delete":
            conn.execute(text("DELETE FROM audit_log WHERE seq=2"))
        else:
            conn.execute(text("UPDATE audit_log SET seq=seq+100 WHERE seq>=2"))
            conn.execute(text("UPDATE audit_log SET seq=seq-99 WHERE seq>=100"))
            conn.execute(text("INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) "
                              "VALUES (2, '2026-01-01', 'mallory', 'x', '', '{}', 'x', 'y')"))
    with transaction() as s:
        report = auditlog.verify(s)
    assert not report.ok
    assert any("seq=2" in p or "seq=3" in p for p in report.problems)
    if tamper == "edit":
        assert any("edited" in p and "seq=2" in p for p in report.problems)
