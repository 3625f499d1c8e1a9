"""Job use cases: the catalogue of job kinds (each registered analysis's), submit long work, list and show it,
cancel and retry it; and the transitions a worker makes (claim under a lease, heartbeat, finish, release).
Every transition is one transaction with its audit-log event; parameters are checked when the job is
submitted, permissions here in the service."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.core.runs import close_lost_runs
from audit.services.analyses.registry import registered_analyses
from audit.services.jobs.kinds import JobError, JobKind
from storage import auditlog
from storage.db import transaction
from storage.jobs_repo import ACTIVE_STATUSES, FINAL_STATUSES, JobRepository
from storage.orm import utcnow
from storage.orm_jobs import JOB_STATUSES, Job
from storage.repositories import UserRepository

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a job that loses its worker this often (e.g. killed for memory) is failed, not retried forever
MAX_MESSAGE = 200
NO_WORKER_AFTER_S = 20  # a job queued this long with none running: say that a worker may be missing
NO_WORKER_HINT = "no worker has taken it yet: is `python -m audit worker` running? (`make run` starts one)"
SHELL_PREFIX = "cli:"  # principals of shell operators (audit.cli), who act as administrators


# ------------------------------------------------------------------ the catalogue of kinds

def job_kinds() -> dict[str, JobKind]:
    """Name -> kind, for every registered analysis in its order."""
    out: dict[str, JobKind] = {}
    for analysis in registered_analyses():
        for kind in analysis.jobs:
            out[kind.name] = kind
    return out


def job_kind(name: str) -> JobKind:
    kinds = job_kinds()
    if name not in kinds:
        raise JobError(f"unknown job kind {name!r}; use one of {', '.join(kinds)}")
    return kinds[name]


@dataclass(frozen=True)
class JobView:
    """One job as pages, the CLI and tests read it."""

    id: int
    kind: str
    label: str
    status: str
    progress: float
    message: str
    executor: str
    result: Optional[dict[str, Any]]
    error: Optional[str]
    parameters: dict[str, Any]
    submitted_by: str
    worker_id: Optional[str]
    attempts: int
    cancel_requested: bool
    created_at: Optional[str]
    started_at: Optional[str]
    finished_at: Optional[str]

    @property
    def subject(self) -> str:
        return job_kind(self.kind).subject(self.parameters)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def waiting_s(self) -> float:
        """Seconds a queued job has waited for a worker (0 once claimed)."""
        if self.status != "queued" or not self.created_at:
            return 0.0
        from datetime import datetime, timezone

        return max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(self.created_at)).total_seconds())

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON contract: ``jobs show ID --json``."""
        return {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 4),
                "message": self.message, "executor": self.executor, "result": self.result, "error": self.error}


def _iso(when: Any) -> Optional[str]:
    from audit.services.core.runs import _utc_iso

    return _utc_iso(when)


def _view(job: Job) -> JobView:
    kind = job_kinds().get(job.kind)
    return JobView(id=job.id, kind=job.kind, label=kind.label if kind else job.kind, status=job.status,
                   progress=float(job.progress or 0.0), message=job.message or "", executor=job.executor or "local",
                   result=dict(job.result) if job.result is not None else None, error=job.error,
                   parameters=dict(job.parameters or {}), submitted_by=job.submitted_by, worker_id=job.worker_id,
                   attempts=int(job.attempts or 0), cancel_requested=bool(job.cancel_requested),
                   created_at=_iso(job.created_at), started_at=_iso(job.started_at), finished_at=_iso(job.finished_at))


def _log(s: Any, actor: str, action: str, job: Job, **details: Any) -> None:
    auditlog.append(s, actor=actor, action=f"job.{action}", subject=f"job/{job.id}",
                    details={"job_id": job.id, "kind": job.kind, **details})


def _get(s: Any, job_id: int) -> Job:
    job = JobRepository(s).get(int(job_id))
    if job is None:
        raise JobError(f"no job with id {job_id}")
    return job


# ------------------------------------------------------------------ what users do

def submit_job(kind: str, parameters: Mapping[str, Any], *, actor: Principal = SYSTEM) -> JobView:
    """Check the parameters (one-line JobError naming what is wrong) and queue the job."""
    spec = job_kind(kind)
    for permission in spec.permissions:
        require(actor, permission)
    if not isinstance(parameters, Mapping):
        raise JobError("parameters must be a mapping")
    params = spec.check(parameters)
    with transaction() as s:
        job = JobRepository(s).add(Job(kind=kind, parameters=params, status="queued", progress=0.0, message="queued",
                                       executor="local", submitted_by=actor.username, attempts=0,
                                       cancel_requested=False))
        _log(s, actor.username, "submit", job, subject=spec.subject(params))
        return _view(job)


def list_jobs(*, limit: int = 100, statuses: Optional[list[str]] = None, kinds: Optional[list[str]] = None,
              actor: Principal = SYSTEM) -> list[JobView]:
    """Newest first."""
    require(actor, "read")
    for st in statuses or []:
        if st not in JOB_STATUSES:
            raise JobError(f"status must be one of {', '.join(JOB_STATUSES)}, got {st!r}")
    with transaction() as s:
        return [_view(j) for j in JobRepository(s).recent(limit=limit, statuses=statuses, kinds=kinds)]


def get_job(job_id: int, *, actor: Principal = SYSTEM) -> JobView:
    require(actor, "read")
    with transaction() as s:
        return _view(_get(s, job_id))


def _may_steer(actor: Principal, job: Job) -> None:
    """Cancel and retry: the submitter, or an administrator."""
    require(actor, "run")
    if actor.role != "admin" and actor.username != job.submitted_by:
        raise PermissionError(f"user {actor.username!r} may not change job {job.id} of {job.submitted_by!r}")


def can_steer(actor: Principal, job: JobView) -> bool:
    """Whether ``actor`` may cancel or retry ``job`` (what a page may offer)."""
    return actor.can("run") and (actor.role == "admin" or actor.username == job.submitted_by)


def cancel_job(job_id: int, *, actor: Principal = SYSTEM) -> JobView:
    """A queued job is cancelled at once; a running one stops at its next batch boundary."""
    with transaction() as s:
        job = _get(s, job_id)
        _may_steer(actor, job)
        if job.status in FINAL_STATUSES:
            raise JobError(f"job {job.id} is already {job.status}")
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled by {actor.username}"
            _log(s, actor.username, "cancelled", job, progress=job.progress)
        elif not job.cancel_requested:
            job.cancel_requested = True
            job.message = f"cancel requested by {actor.username}; stops at the next batch boundary"
            _log(s, actor.username, "cancel_request", job)
        return _view(job)


def retry_job(job_id: int, *, actor: Principal = SYSTEM) -> JobView:
    """Queue a failed or cancelled job again with the same parameters; what it stored is reused."""
    with transaction() as s:
        job = _get(s, job_id)
        _may_steer(actor, job)
        spec = job_kind(job.kind)
        for permission in spec.permissions:
            require(actor, permission)
        if job.status not in ("failed", "cancelled"):
            raise JobError(f"job {job.id} is {job.status}; only failed or cancelled jobs can be retried")
        previous = {"status": job.status, "error": job.error, "attempts": job.attempts}
        job.status, job.progress, job.message, job.error = "queued", 0.0, f"retry requested by {actor.username}", None
        job.cancel_requested, job.worker_id, job.lease_expires, job.finished_at = False, None, None, None
        job.attempts, job.result = 0, None
        _log(s, actor.username, "retry", job, previous=previous)
        return _view(job)


# ------------------------------------------------------------------ what workers do

def claim_next(*, worker_id: str, executor: str, lease_s: float) -> Optional[JobView]:
    """Take the oldest queued job, or one whose worker stopped heartbeating, under a lease of ``lease_s``.

    One transaction per look: SQLite holds the write lock from BEGIN (IMMEDIATE), PostgreSQL skips rows
    that another worker has locked. An expired job that was asked to cancel is cancelled here; one that
    lost its worker ``MAX_ATTEMPTS`` times is failed. ``executor`` is recorded for the kinds it shards,
    ``local`` for the rest."""
    while True:
        with transaction() as s:
            repo = JobRepository(s)
            now = time.time()
            job = repo.next_claimable(now=now)
            if job is None:
                return None
            previous = job.worker_id if job.status == "running" else None
            if previous is not None:  # the runs its lost attempt left open end here, whatever comes next
                close_lost_runs(s, job.id, actor="worker:" + worker_id,
                                reason=f"its worker {previous} stopped (lease expired); job {job.id} claimed again")
            if previous is not None and job.cancel_requested:
                job.status, job.finished_at = "cancelled", utcnow()
                job.message = "cancelled (its worker had stopped)"
                _log(s, "worker:" + worker_id, "cancelled", job, lost_worker=previous)
                continue
            if previous is not None and job.attempts >= MAX_ATTEMPTS:
                job.status, job.finished_at = "failed", utcnow()
                job.error = (f"JobError: its worker stopped {job.attempts} times (last {previous}); "
                             "not retried again (retry it once the cause is fixed)")
                _log(s, "worker:" + worker_id, "failed", job, error=job.error)
                continue
            kind = job_kinds().get(job.kind)
            ran_on = executor if kind is not None and kind.shardable else "local"
            repo.take(job, worker_id=worker_id, executor=ran_on, now=now, lease_s=lease_s)
            job.message = "resuming from stored results" if previous else "started"
            _log(s, "worker:" + worker_id, "start", job, attempt=job.attempts, executor=ran_on,
                 **({"reclaimed_from": previous} if previous else {}))
            return _view(job)


def heartbeat(job_id: int, *, worker_id: str, lease_s: float, progress: Optional[float] = None,
              message: Optional[str] = None) -> Optional[bool]:
    """Extend the lease; the job's cancel flag, or None when this worker no longer holds the job."""
    with transaction() as s:
        return JobRepository(s).heartbeat(job_id, worker_id=worker_id, now=time.time(), lease_s=lease_s,
                                          progress=progress, message=(message or "")[:MAX_MESSAGE] or None)


def finish_job(job_id: int, *, worker_id: str, status: str, result: Optional[dict[str, Any]] = None,
               error: Optional[str] = None, progress: Optional[float] = None, message: str = "") -> bool:
    """Record the end of a job this worker holds (done, failed or cancelled); False when it no longer
    holds it (another worker took it after the lease expired), in which case nothing is written."""
    if status not in FINAL_STATUSES:
        raise JobError(f"a job ends as one of {', '.join(FINAL_STATUSES)}, not {status!r}")
    with transaction() as s:
        job = JobRepository(s).held_by(job_id, worker_id)
        if job is None:
            return False
        job.status, job.finished_at, job.lease_expires = status, utcnow(), None
        job.result, job.error = result, error
        if progress is not None:
            job.progress = float(progress)
        job.message = (message or status)[:MAX_MESSAGE]
        _log(s, "worker:" + worker_id, status, job, attempt=job.attempts,
             **({"result": result} if result else {}), **({"error": error} if error else {}))
        return True


def release_job(job_id: int, *, worker_id: str, reason: str) -> bool:
    """Put a job this worker holds back in the queue (the worker is stopping); what it stored stays."""
    with transaction() as s:
        job = JobRepository(s).held_by(job_id, worker_id)
        if job is None:
            return False
        job.status, job.worker_id, job.lease_expires = "queued", None, None
        job.message = f"released: {reason}"[:MAX_MESSAGE]
        _log(s, "worker:" + worker_id, "release", job, reason=reason, progress=job.progress)
        return True


def actor_for(job: JobView) -> Principal:
    """Who a job runs as: the submitter with the role their account has now (a demoted or disabled user's
    queued work does not run with the old rights); shell operators and the system act as administrators."""
    with transaction() as s:
        user = UserRepository(s).get(job.submitted_by)
        if user is not None:
            if not user.active:
                raise PermissionError(f"user {job.submitted_by!r} is disabled; the job was not run")
            return Principal(user.username, user.role)
    if job.submitted_by.startswith(SHELL_PREFIX) or job.submitted_by == SYSTEM.username:
        return Principal(job.submitted_by, "admin")
    raise PermissionError(f"user {job.submitted_by!r} no longer exists; the job was not run")


def queue_counts() -> dict[str, int]:
    with transaction() as s:
        counts = JobRepository(s).counts()
    return {st: counts.get(st, 0) for st in JOB_STATUSES}
