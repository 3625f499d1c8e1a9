"""Issue 22, hole 2: two auditors signing two reports of one version at the same moment (one approves, one
rejects) must leave exactly one sign-off, the other gets a clear error, and the version's status is the stored
decision. Run on SQLite and, where AUDIT_TEST_PG_URL names a server, on PostgreSQL (the ``db`` fixture).

Both signers are held at a barrier after their checks and before their writes (inside the artifact read that
sign_report does just before writing), so with read-then-write checks both pass; with the version row locked
or updated conditionally the second signer waits on the first and the barrier times out."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete as sa_delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from audit.services.analyses.reports import records as report_records
from audit.services.governance.principals import Principal
from audit.services.core.registry import RegistryError, set_status
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import ModelFamily, ModelVersion, Report, SignOff

HOLD_S = 3.0


def _version_with_two_reports() -> tuple[int, int, int]:
    sha = ArtifactStore().put_bytes(b"%PDF-1.4 a stand-in report\n")
    with transaction() as s:
        fam = ModelFamily(name="race", task="image-classification")
        s.add(fam)
        s.flush()
        mv = ModelVersion(family_id=fam.id, version="1", artifact_sha256="0" * 64, format="state_dict",
                          architecture="small_cnn", labels=["a", "b"], status="in-review", created_by="admin")
        s.add(mv)
        s.flush()
        reports = [Report(model_version_id=mv.id, sha256=sha, filename=f"r{i}.pdf", created_by="author")
                   for i in range(2)]
        s.add_all(reports)
        s.flush()
        return mv.id, reports[0].id, reports[1].id


def _held_reads(monkeypatch, parties: int) -> None:
    """Hold every signer inside its pre-write artifact read until all arrived (or HOLD_S passed)."""
    barrier = threading.Barrier(parties, timeout=HOLD_S)
    real = ArtifactStore.get_bytes

    def held(self, digest):  # noqa: ANN001
        data = real(self, digest)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other signer is blocked on our lock: that is the fixed behaviour
        return data

    monkeypatch.setattr(ArtifactStore, "get_bytes", held)


def test_two_concurrent_signers_store_one_decision(db, monkeypatch):
    version_id, first, second = _version_with_two_reports()
    _held_reads(monkeypatch, 2)
    outcomes: dict[str, object] = {}

    def sign(report_id: int, decision: str, who: str) -> None:
        try:
            outcomes[decision] = report_records.sign_report(report_id, decision=decision, reason=f"{who} decides",
                                                            actor=Principal(who, "auditor"))
        except Exception as exc:  # noqa: BLE001 - the test inspects what each signer got
            outcomes[decision] = exc

    threads = [threading.Thread(target=sign, args=(first, "approved", "ann")),
               threading.Thread(target=sign, args=(second, "rejected", "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with transaction() as s:
        stored = s.scalars(select(SignOff).where(SignOff.model_version_id == version_id)).all()
        status = s.get(ModelVersion, version_id).status
        signed = [r.id for r in s.scalars(select(Report).where(Report.signed.is_(True)))]
    assert len(stored) == 1, [(so.decision, so.signed_by) for so in stored]
    winner = stored[0].decision
    assert status == winner and signed == [stored[0].report_id]
    loser = outcomes["rejected" if winner == "approved" else "approved"]
    assert isinstance(loser, report_records.ReportError), loser
    assert f"race 1 was already {winner}" in str(loser)
    assert isinstance(outcomes[winner], dict) and outcomes[winner]["status"] == winner


def test_a_status_move_never_overwrites_a_concurrent_decision(db, monkeypatch):
    """set_status read the old status and wrote later: a sign-off committed in between was overwritten."""
    version_id, first, _ = _version_with_two_reports()
    report_records.sign_report(first, decision="approved", reason="ok", actor=Principal("ann", "auditor"))
    with transaction() as s:
        assert s.get(ModelVersion, version_id).status == "approved"
    # A stale reader: set_status saw "in-review" before the sign-off committed.
    from audit.services.core import registry

    real = registry.ModelRepository.version

    def stale(self, family, version):  # noqa: ANN001
        row = real(self, family, version)
        if row is not None:  # what it read before the sign-off committed (not a change of its own)
            set_committed_value(row, "status", "in-review")
        return row

    monkeypatch.setattr(registry.ModelRepository, "version", stale)
    with pytest.raises(RegistryError, match="changed while"):
        set_status("race", "1", "draft", actor=Principal("cy", "auditor"))
    monkeypatch.setattr(registry.ModelRepository, "version", real)
    with transaction() as s:
        assert s.get(ModelVersion, version_id).status == "approved"


def test_the_database_refuses_a_second_signoff_for_a_version(db):
    """The unique constraint backs the service: a second row for the version fails even written directly."""
    version_id, first, second = _version_with_two_reports()
    with transaction() as s:
        s.add(SignOff(report_id=first, model_version_id=version_id, decision="approved", reason="r", signed_by="a"))
    with pytest.raises(IntegrityError):
        with transaction() as s:
            s.add(SignOff(report_id=second, model_version_id=version_id, decision="rejected", reason="r",
                          signed_by="b"))


def test_the_migration_names_versions_already_decided_twice(db):
    """An installation that raced before 0010 is told which version holds two sign-offs; nothing is deleted."""
    from alembic import command

    from storage.db import alembic_config, migrate

    version_id, first, second = _version_with_two_reports()
    command.downgrade(alembic_config(), "0008")
    with transaction() as s:
        for report_id, decision in ((first, "approved"), (second, "rejected")):
            s.add(SignOff(report_id=report_id, model_version_id=version_id, decision=decision, reason="r",
                          signed_by="x"))
    with pytest.raises(RuntimeError, match=f"model version id\\(s\\) {version_id} hold more than one sign-off"):
        migrate()
    with transaction() as s:
        assert len(s.scalars(select(SignOff)).all()) == 2
        s.execute(sa_delete(SignOff).where(SignOff.report_id == second))
    migrate()
