"""The worker: cancel at a batch boundary, two worker processes on one queue, and a worker killed with
SIGKILL mid-job whose successor finishes with exactly the expected rows and an intact audit log."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from audit.services.jobs import queue as J
from audit.services.jobs.worker import Worker, wait_for
from tests.jobs.helpers import (ROOT, SLOW_METHODS, SLOW_OPTIONS, explanation_rows, log_actions, start_worker,
                                wait_until, worker_env)

BATCH = 4


def _slow_job(dataset: str = "big") -> J.JobView:
    return J.submit_job("explain", {"family": "tiny", "version": "1", "dataset": dataset, "methods": SLOW_METHODS,
                                    "batch_size": BATCH, "options": SLOW_OPTIONS})


def _run_status(run_id: int) -> str:
    from storage.db import transaction
    from storage.orm import Run

    with transaction() as s:
        return s.get(Run, run_id).status


def _explain_runs() -> list[tuple[int, str]]:
    from sqlalchemy import select

    from storage.db import transaction
    from storage.orm import Run

    with transaction() as s:
        return [(r.id, r.status) for r in s.scalars(select(Run).where(Run.kind == "explain").order_by(Run.id))]


def test_cancel_stops_a_running_job_at_a_batch_boundary(queue_home):
    job = _slow_job()
    worker = Worker(lease_s=6)
    thread = threading.Thread(target=worker.run, kwargs={"once": True})
    thread.start()
    try:
        wait_until(lambda: len(explanation_rows()) >= BATCH * len(SLOW_METHODS), timeout_s=120, what="a stored batch")
        assert J.cancel_job(job.id).cancel_requested
        thread.join(timeout=120)
    finally:
        worker.stop()
        thread.join(timeout=60)
    ended = J.get_job(job.id)
    assert ended.status == "cancelled" and ended.error is None
    rows = explanation_rows()
    assert 0 < len(rows) < 64 * len(SLOW_METHODS)  # stopped before the end
    per_sample = Counter(sha for sha, _ in rows)
    assert set(per_sample.values()) == {len(SLOW_METHODS)}  # whole batches only: every method of each sample
    assert len(per_sample) % BATCH == 0
    [(run_id, status)] = _explain_runs()
    assert status == "interrupted"
    actions = [a for a, subject, _ in log_actions() if subject == f"job/{job.id}"]
    assert actions == ["job.submit", "job.start", "job.cancel_request", "job.cancelled"]


def test_two_workers_on_one_queue_never_run_the_same_job(queue_home):
    ids = [J.submit_job("explain", {"family": "tiny", "version": "1", "dataset": "ref", "methods": ["saliency"],
                                    "limit": n, "batch_size": 2}).id for n in range(1, 11)]
    procs = [start_worker(queue_home, "--once", "--lease", "10", log_name=f"w{i}") for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, (queue_home / "w0.log").read_text()[-2000:]
    jobs = [J.get_job(i) for i in ids]
    assert [j.status for j in jobs] == ["done"] * len(ids)
    assert [j.attempts for j in jobs] == [1] * len(ids)
    starts = Counter(subject for a, subject, _ in log_actions("job.start"))
    assert starts == Counter(f"job/{i}" for i in ids)  # one start per job
    assert len(_explain_runs()) == len(ids)  # one tracked run per job: nothing computed twice
    assert len(explanation_rows()) == 10  # limits 1..10 over the same samples: 10 distinct maps


def test_a_killed_worker_is_replaced_and_the_job_finishes_with_exact_rows(queue_home):
    lease = 3
    job = _slow_job()
    expected = 64 * len(SLOW_METHODS)
    first = start_worker(queue_home, "--lease", str(lease), log_name="killed")
    try:
        wait_until(lambda: len(explanation_rows()) >= 2 * BATCH * len(SLOW_METHODS), timeout_s=180,
                   what="two stored batches", poll_s=0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    stored_before = len(explanation_rows())
    assert 0 < stored_before < expected, "the job must be killed mid-way"
    killed = J.get_job(job.id)
    assert killed.status == "running" and killed.attempts == 1  # nobody recorded an end
    time.sleep(lease + 0.5)  # the dead worker's lease expires

    second = start_worker(queue_home, "--once", "--lease", str(lease), log_name="successor")
    assert second.wait(timeout=300) == 0, (queue_home / "successor.log").read_text()[-2000:]
    done = J.get_job(job.id)
    assert done.status == "done" and done.attempts == 2
    rows = explanation_rows()
    assert len(rows) == expected and len(set(rows)) == expected  # every map once: none lost, none doubled
    assert done.result["reused"] >= stored_before and done.result["computed"] == expected - done.result["reused"]
    starts = [d for a, subject, d in log_actions("job.start") if subject == f"job/{job.id}"]
    assert len(starts) == 2 and '"reclaimed_from"' in starts[1]
    # The run the killed attempt opened is closed as interrupted by its successor; nothing stays running.
    from storage.db import transaction
    from storage.orm import Run

    with transaction() as s:
        runs = [(r.status, r.error or "") for r in s.query(Run).filter(Run.job_id == job.id).order_by(Run.id)]
    assert [st for st, _ in runs] == ["interrupted", "succeeded"], runs
    assert "stopped (lease expired)" in runs[0][1]
    assert [subject for _, subject, _ in log_actions("run.interrupted")] == [f"job/{job.id}"]
    check = subprocess.run([sys.executable, "-m", "audit", "verify-log"], cwd=ROOT, env=worker_env(queue_home),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_wait_for_returns_the_final_state(queue_home):
    job = J.submit_job("explain", {"family": "tiny", "version": "1", "dataset": "ref", "methods": ["saliency"],
                                   "limit": 2})
    assert wait_for(job.id, timeout_s=0.3).status == "queued"
    Worker(lease_s=5).run(once=True)
    assert wait_for(job.id, timeout_s=5).status == "done"
