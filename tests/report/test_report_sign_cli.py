"""`report-sign --as USERNAME`: the CLI signs as a registered user who proves who they are (password from
standard input here), and four-eyes holds on this path too: the report's generator cannot sign it."""

from __future__ import annotations

import io

import pytest

from audit.cli import main
from audit.services.governance.auth import create_user
from audit.services.governance.principals import Principal
from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import generate_report, list_reports

from .conftest import register_tiny

PASSWORDS = {"alice": "alice-pass-123", "bob": "bob-pass-1234", "vic": "viewer-pass-12"}


@pytest.fixture()
def report_by_alice(audit_home, tmp_path):
    register_tiny(tmp_path, versions=("1",), with_dataset=False)
    create_user("alice", PASSWORDS["alice"], "auditor")
    create_user("bob", PASSWORDS["bob"], "auditor")
    create_user("vic", PASSWORDS["vic"], "viewer")
    return generate_report("tiny", "1", compute_missing=False, actor=Principal("alice", "auditor"))["id"]


def _sign(monkeypatch, rid: int, user: str, password: str, decision: str = "approved") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))  # not a terminal: read from stdin
    return main(["report-sign", "--report-id", str(rid), "--decision", decision, "--reason", "reviewed", "--as", user])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_author_cannot_sign_through_the_cli(report_by_alice, monkeypatch, capsys):
    assert _sign(monkeypatch, report_by_alice, "alice", PASSWORDS["alice"]) == 2
    line = _one_line_error(capsys)
    assert "generated report" in line and "four-eyes" in line
    assert get_version("tiny", "1")["status"] not in ("approved", "rejected")
    assert list_reports()[0]["signoff"] is None


def test_a_wrong_password_or_a_viewer_signs_nothing(report_by_alice, monkeypatch, capsys):
    assert _sign(monkeypatch, report_by_alice, "bob", "not-his-password") == 2
    assert "unknown user or wrong password" in _one_line_error(capsys)
    assert _sign(monkeypatch, report_by_alice, "vic", PASSWORDS["vic"]) == 2
    assert "may not sign" in _one_line_error(capsys)
    assert _sign(monkeypatch, report_by_alice, "bob", "") == 2
    assert "no password given" in _one_line_error(capsys)
    assert list_reports()[0]["signoff"] is None


def test_another_auditor_signs_and_the_decision_is_final(report_by_alice, monkeypatch, capsys):
    assert _sign(monkeypatch, report_by_alice, "bob", PASSWORDS["bob"], "rejected") == 0
    assert "is now rejected" in capsys.readouterr().out
    signoff = list_reports()[0]["signoff"]
    assert signoff["signed_by"] == "bob" and signoff["decision"] == "rejected"
    assert get_version("tiny", "1")["status"] == "rejected"
    # Final: neither a second sign-off nor the draft/in-review step moves it.
    assert _sign(monkeypatch, report_by_alice, "bob", PASSWORDS["bob"], "approved") == 2
    assert "already signed" in _one_line_error(capsys)
    from audit.services.core.registry import set_status

    with pytest.raises(ValueError):
        set_status("tiny", "1", "draft", actor=Principal("bob", "auditor"))
    assert get_version("tiny", "1")["status"] == "rejected"
