"""Repository of the job queue: add, read, claim under a lease, heartbeat and finish jobs.

Claiming is atomic on both backends: SQLite transactions begin with ``BEGIN IMMEDIATE`` (storage.db), so
the select-then-update holds the write lock; PostgreSQL locks the chosen row with ``FOR UPDATE SKIP
LOCKED`` so concurrent workers pass over each other's rows instead of queueing on them.
Like every repository it takes a session and never commits."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from storage.orm import utcnow
from storage.orm_jobs import Job

ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("done", "failed", "cancelled")


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, job: Job) -> Job:
        self.s.add(job)
        self.s.flush()
        return job

    def get(self, job_id: int) -> Optional[Job]:
        return self.s.get(Job, job_id)

    def recent(self, *, limit: int = 100, statuses: Optional[Sequence[str]] = None,
               kinds: Optional[Sequence[str]] = None) -> Sequence[Job]:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if statuses:
            q = q.where(Job.status.in_(list(statuses)))
        if kinds:
            q = q.where(Job.kind.in_(list(kinds)))
        return self.s.scalars(q).all()

    def next_claimable(self, *, now: float) -> Optional[Job]:
        """The oldest job a worker may take: queued, or running under a lease that expired at ``now``.
        The row stays locked until the session's transaction ends."""
        q = (select(Job)
             .where(or_(Job.status == "queued",
                        and_(Job.status == "running", Job.lease_expires.is_not(None), Job.lease_expires < now)))
             .order_by(Job.id).limit(1))
        if self.s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        return self.s.scalars(q).first()

    def take(self, job: Job, *, worker_id: str, executor: str, now: float, lease_s: float) -> Job:
        job.status = "running"
        job.worker_id = worker_id
        job.executor = executor
        job.lease_expires = now + lease_s
        job.heartbeat_at = utcnow()
        job.attempts = int(job.attempts or 0) + 1
        job.error = None
        if job.started_at is None:
            job.started_at = utcnow()
        self.s.flush()
        return job

    def heartbeat(self, job_id: int, *, worker_id: str, now: float, lease_s: float,
                  progress: Optional[float] = None, message: Optional[str] = None) -> Optional[bool]:
        """Extend the lease of a job this worker still holds; returns its cancel flag, or None when the
        worker no longer holds it (the lease expired and another worker took it, or it was finished)."""
        values: dict[str, Any] = {"lease_expires": now + lease_s, "heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = float(progress)
        if message is not None:
            values["message"] = message
        res = self.s.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
                             .values(**values))
        if res.rowcount == 0:
            return None
        return bool(self.s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def held_by(self, job_id: int, worker_id: str) -> Optional[Job]:
        """The job if ``worker_id`` still holds it (running under its name), else None."""
        job = self.get(job_id)
        if job is None or job.status != "running" or job.worker_id != worker_id:
            return None
        return job

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        rows = self.s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        return {status: int(n) for status, n in rows}
