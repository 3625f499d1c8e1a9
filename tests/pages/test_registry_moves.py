"""AppTest of the Registry page's status moves: only draft <-> in-review, only for roles that may run audits,
and nothing at all for a version decided by a signed report."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import generate_report, sign_report

ROOT = Path(__file__).resolve().parents[2]


def _moves(role: str) -> list[str]:
    at = AppTest.from_file(str(ROOT / "pages/registry.py"), default_timeout=60)
    at.session_state["principal"] = Principal("tester", role)
    at.run()
    assert not at.exception, at.exception
    return [b.label for b in at.button if b.label.startswith("Move to")]


def test_only_undecided_versions_move_and_only_for_auditors(register_small_cnn):
    register_small_cnn("tiny", "1")
    register_small_cnn("tiny", "2", seed=1)
    rid = generate_report("tiny", "1", compute_missing=False, actor=Principal("alice", "auditor"))["id"]
    sign_report(rid, decision="approved", reason="fine", actor=Principal("bob", "auditor"))
    assert get_version("tiny", "1")["status"] == "approved"
    assert _moves("auditor") == ["Move to in-review"]  # version 2 only; version 1 is final
    assert _moves("admin") == ["Move to in-review"]
    assert _moves("viewer") == []
