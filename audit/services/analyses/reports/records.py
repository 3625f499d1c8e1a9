"""Stored reports: list, fetch and download them (the file re-hashed on read, also the report a finished job
stored), and sign one: the decision on a model version, once, against the report's hash, written to the
audit log."""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from audit.services.governance.principals import SYSTEM, PermissionDenied, Principal, require
from audit.services.core.registry import UNDECIDED, RegistryError
from audit.services.jobs.queue import JobError, get_job
from storage import auditlog
from storage.artifacts import ArtifactStore, sha256_bytes
from storage.db import transaction
from storage.orm import ModelVersion, Report, SignOff
from storage.repositories import ModelRepository, ReportRepository

DECISIONS = ("approved", "rejected")


class ReportError(ValueError):
    """A report request that cannot be served; the message says why."""


def _report_dict(row: Report, family: str, version: str, signoff: Optional[SignOff]) -> dict[str, Any]:
    man = row.manifest or {}
    return {"id": row.id, "family": family, "version": version, "sha256": row.sha256, "filename": row.filename,
            "created_by": row.created_by, "created_at": row.created_at.isoformat() if row.created_at else "",
            "pages": man.get("pages"), "author": man.get("author"), "findings": man.get("findings", []),
            "signed": bool(row.signed), "log_seq": row.log_seq, "log_hash": row.log_hash,
            "signoff": None if signoff is None else {
                "decision": signoff.decision, "reason": signoff.reason, "signed_by": signoff.signed_by,
                "signed_at": signoff.signed_at.isoformat() if signoff.signed_at else "",
                "report_sha256": signoff.report_sha256, "log_seq": signoff.log_seq, "log_hash": signoff.log_hash}}


def list_reports(*, family: Optional[str] = None, version: Optional[str] = None) -> list[dict[str, Any]]:
    """Stored reports, newest first, with their sign-off (if any)."""
    if version is not None and family is None:
        raise ReportError("give the family together with the version")
    with transaction() as s:
        models, reports = ModelRepository(s), ReportRepository(s)
        ids = None
        if family is not None:
            ids = {v.id for v in models.versions(family) if version is None or v.version == version}
            if not ids:
                raise RegistryError(f"{family} {version or ''} is not registered".replace("  ", " "))
        out = []
        for row in reports.newest_first(ids):
            mv = models.version_by_id(row.model_version_id)
            out.append(_report_dict(row, mv.family.name, mv.version, reports.signoff_for_report(row.id)))
        return out


def get_report(report_id: int) -> dict[str, Any]:
    with transaction() as s:
        reports = ReportRepository(s)
        row = reports.get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        mv = ModelRepository(s).version_by_id(row.model_version_id)
        return {**_report_dict(row, mv.family.name, mv.version, reports.signoff_for_report(row.id)),
                "manifest": dict(row.manifest or {})}


def report_bytes(report_id: int, *, actor: Principal = SYSTEM) -> tuple[str, bytes]:
    """(filename, PDF bytes); the stored file is re-hashed and refused if it no longer matches."""
    require(actor, "read")
    with transaction() as s:
        row = ReportRepository(s).get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        sha, filename = row.sha256, row.filename
    data = ArtifactStore().get_bytes(sha)  # raises ArtifactIntegrityError on a hash mismatch
    if sha256_bytes(data) != sha:  # pragma: no cover - get_bytes already verified
        raise ReportError(f"report {report_id} does not match its recorded hash")
    return filename, data


def job_report(job_id: int, *, actor: Principal = SYSTEM) -> tuple[str, bytes]:
    """The PDF a finished report or full-audit job stored (hash verified): (filename, bytes)."""
    job = get_job(job_id, actor=actor)
    report_id = (job.result or {}).get("report_id")
    if job.status != "done" or report_id is None:
        raise JobError(f"job {job_id} has no stored report ({job.kind}, {job.status})")
    return report_bytes(int(report_id), actor=actor)


def _refuse_if_decided(reports: ReportRepository, mv: ModelVersion) -> None:
    prior = next(iter(reports.signoffs_for_version(mv.id)), None)
    if prior is not None:
        raise ReportError(f"{mv.family.name} {mv.version} was already {prior.decision} on report {prior.report_id}; "
                          "versions are immutable, register a new version for a new decision")
    if mv.status not in UNDECIDED:
        raise ReportError(f"{mv.family.name} {mv.version} is {mv.status}; a decided version never changes status")


def sign_report(report_id: int, *, decision: str, reason: str, actor: Principal = SYSTEM) -> dict[str, Any]:
    """Approve or reject the report's model version, once (four-eyes: never by the principal that generated the
    report). Records who, when, why, the SHA-256 of the stored file that was signed and the audit-log head at
    signing (a signed checkpoint); the version's status is then final."""
    require(actor, "sign")
    if decision not in DECISIONS:
        raise ReportError(f"decision must be 'approved' or 'rejected', got {decision!r}")
    reason = (reason or "").strip()
    if not reason:
        raise ReportError("give the reason for the decision")
    with transaction() as s:
        reports = ReportRepository(s)
        row = reports.get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        if row.created_by == actor.username:
            raise PermissionDenied(f"user {actor.username!r} generated report {report_id} and may not sign it; "
                                   "another user with the sign permission signs it (four-eyes)")
        # Lock the version row before any check: a second signer of this version (same report or another) waits
        # here until the first commits, then reads the decision it made. SQLite serialises writers already.
        mv = s.scalars(select(ModelVersion).where(ModelVersion.id == row.model_version_id).with_for_update()
                       .execution_options(populate_existing=True)).one()
        existing = reports.signoff_for_report(report_id)
        if row.signed or existing is not None:
            who = f" by {existing.signed_by} ({existing.decision})" if existing else ""
            raise ReportError(f"report {report_id} is already signed{who}; a signed report is immutable")
        _refuse_if_decided(reports, mv)
        # The signature covers the bytes on file: refuse to sign a report whose stored file was altered.
        ArtifactStore().get_bytes(row.sha256)
        old_status = mv.status
        # Conditional write: only an undecided version takes the decision (a second guard beside the lock).
        taken = s.execute(update(ModelVersion).where(ModelVersion.id == mv.id, ModelVersion.status.in_(UNDECIDED))
                          .values(status=decision).execution_options(synchronize_session=False)).rowcount
        if taken != 1:
            s.refresh(mv)
            _refuse_if_decided(reports, mv)
            raise ReportError(f"{mv.family.name} {mv.version} changed while it was being signed; sign again")
        set_committed_value(mv, "status", decision)  # what the update above wrote
        try:
            so = reports.add_signoff(SignOff(report_id=row.id, model_version_id=mv.id, decision=decision,
                                             reason=reason, signed_by=actor.username, report_sha256=row.sha256))
        except IntegrityError:  # the unique index on signoffs.model_version_id: someone decided it first
            raise ReportError(f"{mv.family.name} {mv.version} was decided by another sign-off at the same moment; "
                              "versions are immutable, register a new version for a new decision") from None
        row.signed = True
        entry = auditlog.append(s, actor=actor.username, action="report.sign",
                                subject=f"{mv.family.name}/{mv.version}",
                                details={"report_id": row.id, "sha256": row.sha256, "decision": decision,
                                         "reason": reason, "status_from": old_status, "status_to": decision,
                                         "report_author": row.created_by, "report_log_seq": row.log_seq},
                                checkpoint=True)
        so.log_seq, so.log_hash = entry.seq, entry.hash
        return {"report_id": row.id, "family": mv.family.name, "version": mv.version, "decision": decision,
                "reason": reason, "signed_by": actor.username,
                "signed_at": so.signed_at.isoformat() if so.signed_at else "", "status": mv.status,
                "sha256": row.sha256, "log_seq": entry.seq, "log_hash": entry.hash}
