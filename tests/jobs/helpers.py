"""Helpers of the job tests: worker processes, stored rows, audit-log events, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLOW_METHODS = ["integrated_gradients", "smoothgrad"]
SLOW_OPTIONS = {"ig_steps": 96, "sg_samples": 48}


def worker_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, AUDIT_HOME=str(home), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("AUDIT_DB_URL", None)
    env.update(extra)
    return env


def start_worker(home: Path, *args: str, log_name: str = "worker", **env: str) -> subprocess.Popen:
    log = open(home / f"{log_name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "audit", "worker", *args], cwd=ROOT, env=worker_env(home, **env),
                            stdout=log, stderr=subprocess.STDOUT)


def explanation_rows(family: str = "tiny", version: str = "1") -> list[tuple[str, str]]:
    """(sample hash, method) of every stored explanation of a version."""
    from sqlalchemy import select

    from storage.db import transaction
    from storage.orm import Explanation
    from storage.repositories import ModelRepository

    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        return [(r.sample_sha256, r.method) for r in
                s.scalars(select(Explanation).where(Explanation.model_version_id == mv.id)).all()]


def log_actions(prefix: str = "job.") -> list[tuple[str, str, str]]:
    """(action, subject, details) of the audit-log events starting with ``prefix``, in order."""
    from sqlalchemy import select

    from storage.db import transaction
    from storage.orm import AuditLogEntry

    with transaction() as s:
        rows = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action.like(f"{prefix}%"))
                         .order_by(AuditLogEntry.seq)).all()
        return [(r.action, r.subject, r.details) for r in rows]


def wait_until(predicate, *, timeout_s: float, what: str, poll_s: float = 0.05):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def claim_concurrently(threads: int = 4, *, lease_s: float = 60) -> list[int]:
    """Ids of the jobs claimed by ``threads`` claimers racing until the queue is empty (a claimer's error
    fails the caller); a job claimed twice appears twice."""
    import threading

    from audit.services.jobs.queue import claim_next

    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        try:
            while (job := claim_next(worker_id=name, executor="local", lease_s=lease_s)) is not None:
                with lock:
                    taken.append(job.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors[0]
    return sorted(taken)
