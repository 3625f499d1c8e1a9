"""The PostgreSQL claim path: FOR UPDATE SKIP LOCKED passes over a row another worker holds, concurrent
claimers take every job exactly once, and audit-log appends from several workers keep one chain.
Skipped unless AUDIT_TEST_PG_URL names a server (.ci/run starts one)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from tests.conftest import empty_postgres
from tests.jobs.helpers import claim_concurrently

PG_URL = os.environ.get("AUDIT_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="AUDIT_TEST_PG_URL is not set (.ci/run starts a PostgreSQL "
                                                   "server and sets it)")


@pytest.fixture()
def pg_queue(audit_home):
    with empty_postgres(PG_URL):
        yield


def _queue(n: int) -> list[int]:
    from storage.db import transaction
    from storage.jobs_repo import JobRepository
    from storage.orm_jobs import Job

    with transaction() as s:
        repo = JobRepository(s)
        return [repo.add(Job(kind="explain", parameters={"i": i}, status="queued", progress=0.0, message="",
                             executor="local", submitted_by="system", attempts=0, cancel_requested=False)).id
                for i in range(n)]


def test_claim_skips_a_row_locked_by_another_worker(pg_queue):
    from audit.services.jobs.queue import claim_next
    from storage.db import get_engine
    from storage.orm_jobs import Job

    first, second = _queue(2)
    with get_engine().connect() as other:
        tx = other.begin()
        locked = other.execute(select(Job.id).where(Job.id == first).with_for_update()).scalar()
        assert locked == first
        # While another worker's transaction holds the oldest row, a claim takes the next one at once.
        job = claim_next(worker_id="w2", executor="local", lease_s=30)
        assert job is not None and job.id == second
        tx.rollback()
    job = claim_next(worker_id="w3", executor="local", lease_s=30)
    assert job is not None and job.id == first
    assert claim_next(worker_id="w4", executor="local", lease_s=30) is None


def test_concurrent_claims_on_postgresql_take_each_job_once(pg_queue):
    from audit.services.governance.audit_trail import verify_log

    ids = _queue(30)
    assert claim_concurrently(4, lease_s=30) == ids
    assert verify_log().ok  # four workers appending at once keep one unbroken chain
