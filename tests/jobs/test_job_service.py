"""Job service: checked parameters, permissions, cancel and retry, a failing job, audit-logged transitions,
and claiming under concurrency (no job taken twice)."""

from __future__ import annotations

import pytest

from audit.services.jobs import queue as J
from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.jobs.kinds import JobError
from audit.services.jobs.worker import Worker
from tests.jobs.helpers import claim_concurrently, explanation_rows, log_actions

AUDITOR = Principal("ann", "auditor")
OTHER = Principal("bob", "auditor")
VIEWER = Principal("vic", "viewer")


def _users():
    from audit.services.governance.auth import create_user

    for p in (AUDITOR, OTHER, VIEWER):
        create_user(p.username, "a-long-password-1", p.role)


def _explain(**over):
    return {"family": "tiny", "version": "1", "dataset": "ref", "methods": ["saliency"], "batch_size": 8, **over}


@pytest.mark.parametrize("kind, params, fragment", [
    ("explain", _explain(methods=["nope"]), "unknown attribution method 'nope'"),
    ("explain", _explain(version="9"), "tiny 9 is not registered"),
    ("explain", _explain(dataset="missing"), "dataset 'missing' does not exist"),
    ("explain", _explain(batch_size=0), "batch_size must be between 1"),
    ("explain", _explain(options={"ig_stepz": 3}), "ig_stepz"),
    ("explain", _explain(colour="red"), "unknown parameter(s) colour"),
    ("tcav", {"family": "tiny", "version": "1", "dataset": "ref", "concepts": ["nope"], "target": "3"},
     "unknown concept 'nope'"),
    ("tcav", {"family": "tiny", "version": "1", "dataset": "ref", "concepts": ["watermark"], "target": "cat"},
     "target must be one of the class labels"),
    ("tcav", {"family": "tiny", "version": "1", "dataset": "ref", "concepts": ["watermark"], "target": 3,
              "n_random": 2}, "n_random must be between 3"),
    ("bias", {"family": "tiny", "version": "1", "dataset": "ref", "attributes": ["age"]},
     "attribute(s) age are not group columns of ref"),
    ("counterfactuals", {"family": "tiny", "version": "1", "dataset": "ref", "distance": "l7"},
     "distance must be l1 or l2"),
    ("drift", {"family": "tiny", "base": "1", "new": "2"}, "tiny 2 is not registered"),
    ("full_audit", {"family": "tiny", "version": "1", "dataset": "nowhere"}, "nowhere"),
    ("sleep", {}, "unknown job kind 'sleep'"),
])
def test_bad_parameters_are_refused_at_submit_with_one_line(queue_home, kind, params, fragment):
    with pytest.raises(JobError) as err:
        J.submit_job(kind, params)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert J.list_jobs() == []  # nothing queued


def test_permissions_are_checked_in_the_service(queue_home):
    _users()
    with pytest.raises(PermissionDenied):
        J.submit_job("explain", _explain(), actor=VIEWER)
    job = J.submit_job("explain", _explain(), actor=AUDITOR)
    assert [j.id for j in J.list_jobs(actor=VIEWER)] == [job.id]  # readers see the queue
    with pytest.raises(PermissionError):
        J.cancel_job(job.id, actor=OTHER)  # another auditor's job
    with pytest.raises(PermissionError):
        J.cancel_job(job.id, actor=VIEWER)
    assert J.cancel_job(job.id, actor=Principal("ada", "admin")).status == "cancelled"


def test_cancel_of_a_queued_job_is_immediate_and_logged(queue_home):
    job = J.submit_job("explain", _explain())
    assert J.cancel_job(job.id).status == "cancelled"
    with pytest.raises(JobError, match="already cancelled"):
        J.cancel_job(job.id)
    assert Worker(lease_s=5).run(once=True) == 0  # nothing left to claim
    assert explanation_rows() == []
    assert [a for a, _, _ in log_actions()] == ["job.submit", "job.cancelled"]


def test_a_failing_job_records_a_one_line_error_and_can_be_retried(queue_home):
    # 'ref' has 3 samples of class 0: the concept test refuses when it runs, not when it is submitted.
    job = J.submit_job("tcav", {"family": "tiny", "version": "1", "dataset": "ref", "concepts": ["watermark"],
                                "target": "0", "n_random": 3})
    assert Worker(lease_s=5).run(once=True) == 1
    failed = J.get_job(job.id)
    assert failed.status == "failed"
    assert failed.error == "ConceptError: dataset ref has only 3 samples of class 0"
    assert failed.to_json()["result"] is None
    with pytest.raises(JobError, match="only failed or cancelled jobs"):
        J.retry_job(J.submit_job("explain", _explain()).id)
    again = J.retry_job(job.id)
    assert (again.status, again.error, again.attempts) == ("queued", None, 0)
    actions = [a for a, subject, _ in log_actions() if subject == f"job/{job.id}"]
    assert actions == ["job.submit", "job.start", "job.failed", "job.retry"]


def test_a_job_of_a_disabled_user_does_not_run(queue_home):
    from audit.services.governance.auth import set_active

    _users()
    job = J.submit_job("explain", _explain(), actor=AUDITOR)
    set_active(AUDITOR.username, False, actor=Principal("ada", "admin"))
    Worker(lease_s=5).run(once=True)
    ended = J.get_job(job.id)
    assert ended.status == "failed" and "user 'ann' is disabled" in ended.error
    assert explanation_rows() == []


def test_show_json_has_the_contract_keys(queue_home):
    job = J.submit_job("explain", _explain())
    Worker(lease_s=5).run(once=True)
    shown = J.get_job(job.id).to_json()
    assert set(shown) == {"id", "kind", "status", "progress", "message", "executor", "result", "error"}
    assert (shown["status"], shown["progress"], shown["executor"]) == ("done", 1.0, "local")
    assert shown["result"]["samples"] == 24 and shown["result"]["computed"] == 24 and shown["result"]["reused"] == 0


def test_concurrent_claims_take_every_job_exactly_once(queue_home):
    ids = [J.submit_job("explain", _explain(limit=i + 1)).id for i in range(24)]
    claimed = claim_concurrently(4, lease_s=60)
    assert claimed == ids  # each job once, none missed
    starts = [d for a, _, d in log_actions("job.start")]
    assert len(starts) == len(ids)
