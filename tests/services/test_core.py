"""The services core: tracked runs (status, error, timings, audit log) and the result-cache key."""

from __future__ import annotations

import pytest
import torch

from audit.services.governance.principals import Principal
from audit.services.core.runs import result_key, stable_value, tracked_run
from storage.db import transaction
from storage.orm import AuditLogEntry, Run

ALICE = Principal("alice", "auditor")


def _runs() -> list[Run]:
    with transaction() as s:
        return list(s.query(Run).order_by(Run.id))


def _actions() -> list[str]:
    with transaction() as s:
        return [e.action for e in s.query(AuditLogEntry).order_by(AuditLogEntry.seq)]


def test_tracked_run_records_success_with_phases(audit_home):
    with tracked_run("probe", family=None, version=None, parameters={"a": 1}, actor=ALICE, seed=3) as run:
        with run.phase("compute"):
            pass
    (row,) = _runs()
    assert row.status == "succeeded" and row.error is None and row.seed == 3 and row.created_by == "alice"
    assert set(row.timings) == {"compute", "total_s"} and row.finished_at is not None
    assert "torch" in row.library_versions
    assert _actions()[-2:] == ["run.start", "run.succeeded"]


def test_tracked_run_records_the_error_in_one_line_and_reraises(audit_home):
    with pytest.raises(ValueError, match="bad input"):
        with tracked_run("probe", family=None, version=None, parameters={}, actor=ALICE):
            raise ValueError("bad input\nwith a second line")
    (row,) = _runs()
    assert row.status == "failed" and row.error == "ValueError: bad input"
    assert _actions()[-1] == "run.failed"


def test_tracked_run_marks_an_interrupt(audit_home):
    with pytest.raises(KeyboardInterrupt):
        with tracked_run("probe", family=None, version=None, parameters={}, actor=ALICE):
            raise KeyboardInterrupt
    assert _runs()[0].status == "interrupted"


def test_result_key_changes_with_every_part():
    base = dict(kind="k", model_sha256="m", options={"a": 1, "b": [1, 2]}, dataset_sha256="d", inputs=[1, 2])
    k0 = result_key(**base)
    variants = [dict(base, kind="k2"), dict(base, model_sha256="m2"), dict(base, dataset_sha256="d2"),
                dict(base, options={"a": 2, "b": [1, 2]}), dict(base, options={"a": 1, "b": [2, 1]}),
                dict(base, inputs=[1, 3]), dict(base, inputs=[1]), dict(base, other_model_sha256="o")]
    keys = {result_key(**v) for v in variants}
    assert k0 not in keys and len(keys) == len(variants)
    assert result_key(**dict(base, options={"b": [1, 2], "a": 1})) == k0  # order of options is irrelevant


def test_tensors_enter_the_key_by_content():
    a, b = torch.zeros(2, 3), torch.zeros(2, 3)
    assert stable_value(a) == stable_value(b)
    b[0, 0] = 1e-6
    assert stable_value(a) != stable_value(b)
    assert stable_value(torch.zeros(3, 2)) != stable_value(a)  # same bytes, other shape
