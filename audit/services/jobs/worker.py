"""The job worker: claim a job, keep its lease alive from a heartbeat thread, run it through its service,
and record how it ended. ``python -m audit worker`` runs one; any number may share a database.

A job stops only at a batch boundary (where its service reports progress): when it was cancelled, when
this worker was asked to stop (the job goes back to the queue), or when its lease was lost to another
worker. Results are committed batch by batch by the services, so a successor resumes from them."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from audit.services.jobs import queue as J
from audit.services.core.runs import one_line, running_job
from audit.services.jobs.kinds import JobContext
from audit.services.jobs.queue import job_kind

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
DEFAULT_POLL_S = 1.0
MAX_HEARTBEAT_S = 2.0  # also how soon progress shows and a cancel request is seen


class JobStop(BaseException):
    """Raised from a job's progress callback at a batch boundary. A BaseException, so the services'
    ``except Exception`` handlers let it through and their runs close as ``interrupted``."""


class JobCancelled(JobStop):
    pass


class WorkerStopping(JobStop):
    pass


class LeaseLost(JobStop):
    pass


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_seconds() -> float:
    value = os.environ.get("AUDIT_JOB_LEASE_S")
    try:
        lease = float(value) if value else DEFAULT_LEASE_S
    except ValueError:
        raise ValueError(f"AUDIT_JOB_LEASE_S must be a number of seconds, got {value!r}") from None
    if lease < 1:
        raise ValueError(f"AUDIT_JOB_LEASE_S must be at least 1 second, got {lease:g}")
    return lease


class _Lease(threading.Thread):
    """Extends the lease every third of its length (at most every 2 s) and carries the latest progress to the database; sets
    ``cancel`` when the job was asked to cancel and ``lost`` when this worker no longer holds it."""

    def __init__(self, job_id: int, worker_id: str, lease_s: float) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.job_id, self.worker_id, self.lease_s = job_id, worker_id, lease_s
        self.progress, self.message = 0.0, "started"
        self.cancel, self.lost, self._done = threading.Event(), threading.Event(), threading.Event()

    def run(self) -> None:
        while not self._done.wait(min(self.lease_s / 3, MAX_HEARTBEAT_S)):
            try:
                flag = J.heartbeat(self.job_id, worker_id=self.worker_id, lease_s=self.lease_s,
                                   progress=self.progress, message=self.message)
            except Exception as exc:  # noqa: BLE001 - a busy database: try again; the lease has slack
                log.warning("heartbeat of job %s failed: %s", self.job_id, one_line(exc))
                continue
            if flag is None:
                self.lost.set()
                return
            if flag:
                self.cancel.set()

    def close(self) -> None:
        self._done.set()
        self.join(timeout=self.lease_s)


@dataclass
class Worker:
    """Runs jobs one at a time. ``executor``: "local", or "ray" to shard sample-parallel kinds over a Ray
    cluster (``ray_address``; none starts a local one with ``ray_cpus`` CPUs)."""

    executor: str = "local"
    ray_address: Optional[str] = None
    ray_cpus: Optional[int] = None
    lease_s: float = field(default_factory=lease_seconds)
    poll_s: float = DEFAULT_POLL_S
    worker_id: str = field(default_factory=default_worker_id)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _batch_executor: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ValueError(f"executor must be local or ray, got {self.executor!r}")

    # -------------------------------------------------------------- life cycle

    def stop(self) -> None:
        """Ask the worker to stop: the running job goes back to the queue at its next batch boundary."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def batch_executor(self) -> Any:
        if self._batch_executor is None and self.executor == "ray":
            from audit.services.jobs.ray_executor import RayExecutor

            self._batch_executor = RayExecutor(address=self.ray_address, num_cpus=self.ray_cpus)
        return self._batch_executor

    def close(self) -> None:
        if self._batch_executor is not None and hasattr(self._batch_executor, "close"):
            self._batch_executor.close()
            self._batch_executor = None

    def run(self, *, once: bool = False) -> int:
        """Work until stopped; with ``once``, until no job is left to claim. Returns the jobs run."""
        ran = 0
        if self.executor == "ray":
            self.batch_executor()  # fail now, with the install hint, rather than at the first job
        log.info("worker %s started (executor %s, lease %.0f s)", self.worker_id, self.executor, self.lease_s)
        try:
            while not self.stopping:
                job = J.claim_next(worker_id=self.worker_id, executor=self.executor, lease_s=self.lease_s)
                if job is None:
                    if once:
                        break
                    self._stopping.wait(self.poll_s)
                    continue
                self.run_job(job)
                ran += 1
        finally:
            self.close()
        return ran

    # -------------------------------------------------------------- one job

    def run_job(self, job: J.JobView) -> str:
        """Run a claimed job to its end; returns how it ended (done, failed, cancelled, released, lost)."""
        lease = _Lease(job.id, self.worker_id, self.lease_s)
        lease.start()

        def progress(fraction: float, message: str) -> None:
            lease.progress = max(lease.progress, min(1.0, max(0.0, float(fraction))))
            lease.message = str(message)[:J.MAX_MESSAGE]
            self._check(lease)

        spec = job_kind(job.kind)
        ctx = JobContext(progress=progress, executor=self.batch_executor() if spec.shardable else None)
        log.info("job %s (%s) started on %s", job.id, job.kind, self.worker_id)
        try:
            try:
                actor = J.actor_for(job)
                self._check(lease)
                with running_job(job.id):
                    result = spec.run(dict(job.parameters), actor, ctx)
            finally:
                lease.close()
        except JobCancelled:
            J.finish_job(job.id, worker_id=self.worker_id, status="cancelled", progress=lease.progress,
                         message=f"cancelled at {lease.progress:.0%}; what was stored stays")
            return "cancelled"
        except WorkerStopping:
            J.release_job(job.id, worker_id=self.worker_id, reason=f"worker {self.worker_id} stopped")
            return "released"
        except LeaseLost:
            log.warning("job %s: lease lost to another worker; stopped at a batch boundary", job.id)
            return "lost"
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, the worker carries on
            log.info("job %s failed: %s", job.id, one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
            J.finish_job(job.id, worker_id=self.worker_id, status="failed", error=one_line(exc),
                         progress=lease.progress, message="failed")
            return "failed"
        if not J.finish_job(job.id, worker_id=self.worker_id, status="done", result=result, progress=1.0,
                            message="done"):
            log.warning("job %s finished after its lease was lost; the holder records its end", job.id)
            return "lost"
        return "done"

    def _check(self, lease: _Lease) -> None:
        if lease.lost.is_set():
            raise LeaseLost(f"job {lease.job_id}")
        if not lease.cancel.is_set() and J.get_job(lease.job_id).cancel_requested:
            # Read at every batch boundary, not only at the next heartbeat: a cancel stops the job at the
            # next boundary even when the remaining batches would end before the heartbeat.
            lease.cancel.set()
        if lease.cancel.is_set():
            raise JobCancelled(f"job {lease.job_id}")
        if self.stopping:
            raise WorkerStopping(self.worker_id)


def wait_for(job_id: int, *, timeout_s: float, poll_s: float = 0.2) -> J.JobView:
    """Block until a job ends or ``timeout_s`` passes (tests, benchmarks); returns its last state."""
    deadline = time.monotonic() + timeout_s
    job = J.get_job(job_id)
    while job.active and time.monotonic() < deadline:
        time.sleep(poll_s)
        job = J.get_job(job_id)
    return job
