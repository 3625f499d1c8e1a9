"""Report service on tiny registries: missing results are named, numbers match the database, the file
hash is what is stored and printed, pages are not blank, sign-off happens once and is logged."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from sqlalchemy import select

from audit.services.governance.principals import PermissionDenied, Principal
from audit.report.naming import method_label
from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import (ReportError, generate_report, get_report, list_reports, report_bytes,
                                    sign_report)
from storage.artifacts import ArtifactIntegrityError, ArtifactStore
from storage.db import transaction
from storage.orm import AnalysisResult, AuditLogEntry, Explanation, Report, Run, SignOff

from .conftest import N_REF, register_tiny, run_tiny_concept_test, stored

SECTION_TITLES = ["Executive summary", "Intended use and model description", "Data", "Performance", "Explanations",
                  "Explanation quality", "Concept tests (TCAV)", "Bias audit", "Counterfactuals and probes",
                  "Drift against the previous version", "Limitations", "Sign-off",
                  "Appendix: manifest and library versions"]
AUDITOR = Principal("alice", "auditor")
SIGNER = Principal("bob", "auditor")  # four-eyes: never the principal that generated the report
VIEWER = Principal("victor", "viewer")


def _write(report_id: int, tmp_path) -> tuple[bytes, object]:
    name, data = report_bytes(report_id)
    path = tmp_path / name
    path.write_bytes(data)
    return data, path


def _log(action: str) -> list[AuditLogEntry]:
    with transaction() as s:
        return list(s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == action)).all())


def test_minimal_registry_report_names_what_is_missing(audit_home, tmp_path, pdf):
    register_tiny(tmp_path, versions=("1",), with_dataset=False)
    info = generate_report("tiny", "1", author="Ada Lovelace", actor=AUDITOR)
    data, path = _write(info["id"], tmp_path)
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    text, flat = pdf.text(path), pdf.flat(path)
    assert get_version("tiny", "1")["sha256"] in text
    assert "Ada Lovelace" in text and "tiny version 1" in flat
    for title in SECTION_TITLES:
        assert title in flat, title
    assert flat.count("MISSING:") >= 5
    assert "python -m audit tcav --family tiny --version 1" in flat
    assert "first version of its family" in flat
    # No reference set: the stored registration metric stands in, checked against the 0.90 threshold.
    assert "accuracy 0.8125 (stored)" in flat
    assert info["pages"] >= 4 and len(info["findings"]) >= 5
    with transaction() as s:
        row = s.get(Report, info["id"])
        assert row.sha256 == info["sha256"] and not row.signed and row.created_by == "alice"
        assert row.manifest["pages"] == info["pages"]
    entries = _log("report.generate")
    assert len(entries) == 1 and json.loads(entries[0].details)["sha256"] == info["sha256"]


def _independent_accuracy() -> tuple[float, int]:
    from audit.services.core.datasets import load_image_samples
    from audit.services.core.registry import load_handle

    h = load_handle("tiny", "2")
    samples = load_image_samples("ref")
    x = (samples.images - 0.5) / 0.5  # the registered mean/std
    with torch.no_grad():
        pred = h.module(x).argmax(1).numpy()
    correct = int((pred == np.asarray(samples.labels)).sum())
    return correct / len(samples.labels), correct


def _four(v: float) -> str:
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def test_report_numbers_match_the_stored_results(tiny_reports, tmp_path, pdf, monkeypatch):
    import audit.services.analyses.reports.service as reports

    # Fewer integration steps keep the test quick; nothing checked below depends on them.
    monkeypatch.setattr(reports, "FIGURE_OPTIONS", {"ig_steps": 8, "seed": 0})
    monkeypatch.setattr(reports, "DRIFT_OPTIONS", {"ig_steps": 8, "seed": 0})
    info = generate_report("tiny", "2", author="QA team", actor=AUDITOR)
    data, path = _write(info["id"], tmp_path)
    flat = pdf.flat(path)
    assert get_version("tiny", "2")["sha256"] in flat
    # Concept test: one row per (concept, layer) of the stored test, its numbers as stored.
    tcav = tiny_reports["tcav"].summary["concepts"]
    for concept, entry in tcav.items():
        for layer, cell in entry["layers"].items():
            row = (f"{concept} {layer} {_four(cell['score'])} {cell['random_mean']:.3f} +/- {cell['random_std']:.3f} "
                   f"{_four(cell['magnitude'])} {_four(cell['p_value'])} {_four(cell['p_value_corrected'])} "
                   f"{'yes' if cell['significant'] else 'no'} {_four(cell['cav_accuracy'])}")
            assert row in flat, row
    assert "watermark layers" not in flat  # the old reader took the "layers" key for a layer
    n_sig = sum(c["significant"] for e in tcav.values() for c in e["layers"].values())
    assert f"{n_sig} of 4 concept/layer tests significant" in flat
    # Bias: each group's interval and the gap, checked against the 0.10 threshold.
    bias = tiny_reports["bias"].summary
    for g in bias["by_group"]:
        assert f"{_four(g['accuracy_ci'][0])} - {_four(g['accuracy_ci'][1])}" in flat, g
    gap = bias["difference"]["accuracy"]
    assert f"largest accuracy gap {gap:.4f}" in flat
    # Counterfactuals.
    assert _four(tiny_reports["counterfactual"].summary["valid_rate"]) in flat
    # Accuracy recomputed here, independently of the service.
    acc, correct = _independent_accuracy()
    assert f"{acc:.4f} ({correct} of {N_REF} correct" in flat
    # Drift against version 1 was computed and stored on the way.
    v1 = get_version("tiny", "1")["id"]
    with transaction() as s:
        drift = s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "drift")).all()
        quality = s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "explanation_quality")).all()
        assert len(drift) == 1 and len(quality) == 1
        assert drift[0].other_version_id == v1
        # The report itself is a tracked run, like every other analysis.
        run = s.get(Run, info["run_id"])
        assert (run.kind, run.status, run.error) == ("report", "succeeded", None)
        assert {"gather", "render", "total_s"} <= set(run.timings)
    assert "Version 2 compared with 1" in flat
    # Methods are named as people say them; each paper behind them is cited once, in the appendix.
    assert "Integrated Gradients" in flat and "Grad-CAM++" in flat
    for author in ("Sundararajan", "Selvaraju", "Adebayo", "Kim, Wattenberg"):
        assert flat.count(author) == 1, author
    # The appendix pins the stored results by hash.
    assert drift[0].artifact_sha256 in flat and tiny_reports["tcav"].pin in flat
    kinds_first = [e["kind"] for e in get_report(info["id"])["manifest"]["entries"]]
    # What the cited maps were computed on, read from their stored rows.
    from audit.attribution.engine_record import describe_engine

    cited = [e["id"] for e in get_report(info["id"])["manifest"]["entries"] if e["kind"] == "explanation"]
    with transaction() as s:
        engines = {r.method: r.engine for r in s.scalars(select(Explanation).where(Explanation.id.in_(cited)))}
    assert engines and all(e and e["precision"] == "float32" for e in engines.values()), engines
    assert "Computed on (from the stored maps): " in flat and "not recorded" not in flat
    for method, engine in engines.items():
        assert describe_engine(engine) in flat, (method, engine)
    findings = {f["area"]: f["status"] for f in info["findings"] if f["check"].startswith(("accuracy gap", "concepts"))}
    assert findings == {"Bias": "pass" if gap <= 0.10 else "fail", "Concept tests": "info"}
    pages = pdf.page_images(path, tmp_path)
    assert len(pages) == info["pages"]
    assert all(p.std() > 8 for p in pages), [round(float(p.std()), 1) for p in pages]
    # A second report, from stored results only, finds the same explanations, quality checks and drift.
    with transaction() as s:
        s.query(Explanation).filter(Explanation.id.in_(cited), Explanation.method == "saliency").update(
            {"engine": None}, synchronize_session=False)
    before = len(_log("explanation.create"))
    again = generate_report("tiny", "2", compute_missing=False, actor=AUDITOR)
    assert len(_log("explanation.create")) == before
    kinds = [e["kind"] for e in get_report(again["id"])["manifest"]["entries"]]
    assert kinds.count("explanation") == kinds_first.count("explanation") > 0
    # Rows stored before the engine path was recorded say so (the section reads the rows, not this run).
    assert f"{method_label('saliency')}: not recorded" in pdf.flat(_write(again["id"], tmp_path)[1])
    assert {"explanation_quality", "drift", "tcav", "bias", "counterfactual"} <= set(kinds)
    with transaction() as s:
        assert len(s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "drift")).all()) == 1
        assert len(s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "explanation_quality")).all()) == 1


def test_drift_section_lists_the_concept_changes_both_versions_tested(tiny_reports):
    from audit.report.sections import ModelFacts, drift_section
    from audit.results.drift import DriftAssessment
    from audit.services.analyses.drift.service import compute_drift

    run_tiny_concept_test("1")
    compute_drift("tiny", "1", "2", dataset="ref", limit=4, options={"ig_steps": 4, "seed": 0})
    assessment = DriftAssessment.from_stored(stored("drift", "tiny", "2"))
    sec = drift_section(ModelFacts("tiny", "2", "", get_version("tiny", "2")), assessment)
    base, new = stored("tcav", "tiny", "1").summary["concepts"], tiny_reports["tcav"].summary["concepts"]
    concept_table = next(b for b in sec.blocks if getattr(b, "columns", [None])[0] == "Concept")
    expected = {(c, layer, _four(base[c]["layers"][layer]["score"]), _four(cell["score"]))
                for c, entry in new.items() for layer, cell in entry["layers"].items()}
    assert {(r[0], r[1], r[3], r[4]) for r in concept_table.rows} == expected
    method_table = next(b for b in sec.blocks if getattr(b, "columns", [None])[0] == "Method")
    assert {r[0]: r[1] for r in method_table.rows} == {
        method_label(m): _four(d.rank_correlation["mean"]) for m, d in assessment.methods.items()}
    assert sec.sources[0].id == assessment.result_id and sec.findings[0].section == "drift"


def test_signoff_is_recorded_once_and_the_file_is_verified(tiny_reports, tmp_path):
    info = generate_report("tiny", "2", compute_missing=False, actor=AUDITOR)
    with pytest.raises(PermissionDenied):
        generate_report("tiny", "2", actor=VIEWER)
    with pytest.raises(PermissionDenied):
        sign_report(info["id"], decision="approved", reason="ok", actor=VIEWER)
    with pytest.raises(ReportError, match="reason"):
        sign_report(info["id"], decision="approved", reason="  ", actor=SIGNER)
    with pytest.raises(ReportError, match="decision"):
        sign_report(info["id"], decision="maybe", reason="x", actor=SIGNER)
    with pytest.raises(PermissionDenied, match="may not sign"):
        sign_report(info["id"], decision="approved", reason="my own report", actor=AUDITOR)
    out = sign_report(info["id"], decision="approved", reason="meets the thresholds", actor=SIGNER)
    assert out["status"] == "approved" and get_version("tiny", "2")["status"] == "approved"
    with transaction() as s:
        so = s.scalars(select(SignOff)).one()
        assert (so.report_id, so.decision, so.signed_by, so.reason) == (info["id"], "approved", "bob",
                                                                       "meets the thresholds")
        assert s.get(Report, info["id"]).signed
    entry = _log("report.sign")[0]
    details = json.loads(entry.details)
    assert entry.actor == "bob" and details["sha256"] == info["sha256"] and details["status_to"] == "approved"
    with pytest.raises(ReportError, match="already signed"):
        sign_report(info["id"], decision="rejected", reason="changed my mind", actor=SIGNER)
    second = generate_report("tiny", "2", compute_missing=False, actor=AUDITOR)
    with pytest.raises(ReportError, match="already approved"):
        sign_report(second["id"], decision="rejected", reason="second opinion", actor=SIGNER)
    listed = list_reports(family="tiny", version="2")
    assert [r["id"] for r in listed] == [second["id"], info["id"]]
    assert listed[1]["signoff"]["decision"] == "approved" and listed[0]["signoff"] is None
    # The stored file is re-hashed on download: an edited file is refused.
    name, data = report_bytes(info["id"], actor=VIEWER)
    assert hashlib.sha256(data).hexdigest() == info["sha256"] and name.endswith(".pdf")
    path = ArtifactStore().path(info["sha256"])
    path.write_bytes(data.replace(b"tiny", b"tinx", 1))
    with pytest.raises(ArtifactIntegrityError):
        report_bytes(info["id"])
    from audit.services.governance.audit_trail import verify_log

    assert verify_log().ok


def test_cli_report_prints_the_hash_of_the_file(tiny_reports, tmp_path, capsys, monkeypatch):
    from audit.cli import main

    out = tmp_path / "tiny-1.pdf"
    rc = main(["report", "--family", "tiny", "--version", "1", "--out", str(out), "--author", "Bob",
               "--no-compute", "--quiet"])
    printed = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert rc == 0 and printed[1] == str(out)
    assert printed[0] == hashlib.sha256(out.read_bytes()).hexdigest() == list_reports()[0]["sha256"]
    assert main(["report", "--family", "tiny", "--version", "1", "--out", str(tmp_path / "no" / "x.pdf")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # Four-eyes: a registered user other than the report's generator signs (`--as`, password on stdin).
    import io

    from audit.services.governance.auth import create_user

    create_user(SIGNER.username, "signer-pass-123", SIGNER.role)
    rid = generate_report("tiny", "1", compute_missing=False, actor=AUDITOR)["id"]
    sign = ["report-sign", "--report-id", str(rid), "--reason", "toy", "--as", SIGNER.username]
    monkeypatch.setattr("sys.stdin", io.StringIO("signer-pass-123\n"))
    assert main([*sign, "--decision", "rejected"]) == 0
    assert "is now rejected" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("signer-pass-123\n"))
    assert main([*sign, "--decision", "approved"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already signed" in err[0]
    assert main(["reports", "--family", "tiny"]) == 0
    assert f"rejected by {SIGNER.username}" in capsys.readouterr().out
