"""The full audit (service and ``python -m audit audit``) on a tiny two-version registry."""

from __future__ import annotations

import hashlib
import json
import sys
import time

import pytest
import torch

from tests.conftest import TINY_LABELS

N = 40
# Small budgets so one full audit stays well under a minute on two CPU cores.
CLI_BUDGET = ["--explain-limit", "4", "--cf-limit", "2", "--cf-steps", "10", "--tcav-runs", "3", "--tcav-set-size", "8",
              "--n-boot", "10", "--quiet"]


def _patched(images: torch.Tensor, mask: list[bool]) -> torch.Tensor:
    out = images.clone()
    for i, m in enumerate(mask):
        if m:
            out[i, :, 4:12, 4:12] = 1.0
    return out


@pytest.fixture()
def family(audit_home, register_small_cnn):
    """Family 'tiny': version 1 (no parent) and 2 (parent 1); reference set 'ref' of 40 labelled images
    with groups 'site' (A/B) and boolean 'patch' (mostly class 2); concept set 'patch' (patched images)."""
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn("tiny", "1", seed=0)
    register_small_cnn("tiny", "2", seed=1)
    g = torch.Generator().manual_seed(3)
    labels = [i % 4 for i in range(N)]
    patch = [y == 2 or i % 10 == 1 for i, y in enumerate(labels)]  # class 2 always, a few others
    images = _patched(torch.rand(N, 1, 32, 32, generator=g) * 0.5, patch)
    add_image_dataset("ref", images, labels, [{"site": "A" if i % 3 else "B", "patch": p} for i, p in enumerate(patch)],
                      label_names=TINY_LABELS)
    concept = _patched(torch.rand(12, 1, 32, 32, generator=g) * 0.5, [True] * 12)
    add_image_dataset("patch", concept, [None] * 12, [{}] * 12, label_names=[])
    return audit_home


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from audit.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _counts(family: str, version: str) -> dict[str, int]:
    from audit.services.core.runs import stored_analyses

    out: dict[str, int] = {}
    for r in stored_analyses(family, version):
        out[r.kind] = out.get(r.kind, 0) + 1
    return out


def _explanation_rows() -> int:
    from sqlalchemy import func, select

    from storage.db import transaction
    from storage.orm import Explanation

    with transaction() as s:
        return int(s.scalar(select(func.count()).select_from(Explanation)))


def test_default_targets_pick_the_class_most_associated_with_a_boolean_group():
    from audit.services.analyses.concepts.step import boolean_groups, default_targets

    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    groups = [{"patch": i in (3, 4, 5), "site": "A"} for i in range(9)]
    assert boolean_groups(groups) == ["patch"]
    # "patch" is True on samples of classes 1, 1, 2 -> class 1; "stripes" is no group -> most frequent (2)
    assert default_targets(["patch", "stripes"], labels, groups) == {"patch": 1, "stripes": 2}


def test_flag_columns_imported_from_a_csv_count_as_boolean_groups():
    """A CSV import stores cells as text ("yes"/"no", "True"/"False", "1"/"0"): such a column is a flag all
    the same, so a concept named like it is tested on the class it marks most often."""
    from audit.services.analyses.concepts.step import boolean_groups, default_targets

    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    for yes, no in (("yes", "no"), ("True", "False"), ("1", "0"), ("Y", "n")):
        groups = [{"patch": yes if i in (5, 6, 7) else no, "site": "A" if i % 2 else "1"} for i in range(9)]
        assert boolean_groups(groups) == ["patch"], (yes, no)
        assert default_targets(["patch"], labels, groups) == {"patch": 2}, (yes, no)
    mixed = [{"patch": "yes" if i % 2 else "maybe"} for i in range(9)]
    assert boolean_groups(mixed) == []


def test_section_statuses_take_the_worst_finding_of_each_section():
    from audit.services.analyses.full_audit.service import section_statuses

    findings = [{"area": "Bias", "status": "pass"}, {"area": "Bias", "status": "fail"},
                {"area": "Drift", "status": "info"}, {"area": "Counterfactuals", "status": "info"},
                {"area": "Counterfactuals", "status": "missing"}, {"area": "Performance", "status": "pass"}]
    assert section_statuses(findings) == {"bias": "FAIL", "drift": "INFO", "counterfactuals": "MISSING",
                                          "performance": "PASS"}


def test_full_audit_cli_runs_every_step_stores_its_results_and_reuses_them(family, capsys, tmp_path):
    from audit.services.analyses.concepts.service import stored_concept_tests
    from audit.services.core.runs import stored_analyses
    from audit.services.analyses.reports.service import list_reports, report_bytes

    pdf = tmp_path / "audit.pdf"
    t0 = time.perf_counter()
    rc, out, err = _cli(capsys, "audit", "--family", "tiny", "--version", "2", "--dataset", "ref",
                        "--concepts", "patch", "--out", str(pdf), "--json", *CLI_BUDGET)
    first_s = time.perf_counter() - t0
    print(f"first full audit: {first_s:.1f} s", file=sys.__stderr__)
    assert rc == 0, err
    res = json.loads(out)
    assert set(res) == {"report_id", "report_sha256", "sections", "findings"}
    _, data = report_bytes(res["report_id"])
    assert res["report_sha256"] == hashlib.sha256(data).hexdigest() == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert {"performance", "bias", "concepts", "counterfactuals", "drift", "quality"} <= set(res["sections"])
    assert set(res["sections"].values()) <= {"PASS", "FAIL", "INFO", "MISSING"}
    assert all({"area", "check", "status", "detail"} <= set(f) for f in res["findings"])
    # every analysis the data allows is stored ...
    counts = _counts("tiny", "2")
    assert counts.get("tcav") == 1 and counts.get("counterfactual") == 1 and counts.get("drift") == 1, counts
    bias = stored_analyses("tiny", "2", "bias")
    assert sorted(tuple(r.parameters["attributes"]) for r in bias) == [("patch",), ("site",)]
    # ... the concept ran on the class most associated with the "patch" group (class 2), and the report
    # read every stored result: concepts, bias, counterfactuals and drift are not MISSING
    assert [t.target for t in stored_concept_tests("tiny", "2")] == [2]
    for name in ("concepts", "bias", "counterfactuals", "drift"):
        assert res["sections"][name] != "MISSING", (name, res["sections"])
    assert res["sections"]["drift"] in ("PASS", "FAIL")

    explanations = _explanation_rows()
    t0 = time.perf_counter()
    rc, out, err = _cli(capsys, "audit", "--family", "tiny", "--version", "2", "--dataset", "ref",
                        "--concepts", "patch", *CLI_BUDGET)
    second_s = time.perf_counter() - t0
    print(f"second full audit: {second_s:.1f} s", file=sys.__stderr__)
    assert rc == 0, err
    again = out.strip().splitlines()[-1].split()[0]
    assert _counts("tiny", "2") == counts  # nothing recomputed: every step reused its stored result
    assert _explanation_rows() == explanations
    reports = list_reports(family="tiny", version="2")
    assert len(reports) == 2
    newest = max(reports, key=lambda r: r["id"])
    assert newest["id"] != res["report_id"] and again == newest["sha256"]


def test_full_audit_without_parent_skips_drift_with_a_reason(family):
    from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit

    seen: list[float] = []
    res = run_full_audit("tiny", "1", dataset="ref", options=FullAuditOptions(
        explain_limit=2, cf_limit=1, bias_n_boot=5, cf_search={"max_iter": 5, "binary_steps": 1, "restarts": 1}),
        progress=lambda f, msg: seen.append(f))
    assert "parent" in res.skipped["drift"]
    assert "concepts" in res.skipped  # none given
    assert res.sections["drift"] == "INFO"  # the report says: first version, nothing to compare
    assert res.sections["concepts"] == "MISSING"
    assert "drift" not in _counts("tiny", "1")
    assert _counts("tiny", "1").get("bias") == 2
    assert set(res.steps) == {"explanations", "concepts", "bias", "counterfactuals", "drift", "report"}
    assert seen and seen == sorted(seen) and seen[-1] == 1.0


def test_full_audit_user_errors_are_one_line_and_non_zero(family, capsys):
    for argv, needle in (
        (["--family", "tiny", "--version", "2", "--dataset", "nope"], "nope"),
        (["--family", "ghost", "--version", "2", "--dataset", "ref"], "ghost"),
        (["--family", "tiny", "--version", "2", "--dataset", "ref", "--concepts", "unicorns"], "unicorns"),
        (["--family", "tiny", "--version", "2", "--dataset", "ref", "--concepts", "patch", "--targets", "cat"],
         "cat"),
    ):
        rc, _, err = _cli(capsys, "audit", *argv, "--quiet")
        assert rc != 0, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert _counts("tiny", "2") == {}  # nothing ran


def test_reports_page_offers_the_full_audit_to_auditors_only(family):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from audit.services.governance.principals import Principal

    page = str(Path(__file__).resolve().parents[2] / "pages" / "reports.py")
    for role, disabled in (("auditor", False), ("viewer", True)):
        at = AppTest.from_file(page, default_timeout=120)
        at.session_state["principal"] = Principal("tester", role)
        at.run()
        assert not at.exception, at.exception
        button = [b for b in at.button if b.label == "Run the full audit"]
        assert len(button) == 1 and button[0].disabled is disabled
        assert at.selectbox(key="fa_dataset").options == ["ref"]  # the unlabelled concept set is not offered


def test_full_audit_of_a_text_model_tests_text_concepts_and_skips_image_only_steps(tiny_text):
    from audit.services.core.datasets import add_text_dataset
    from audit.services.analyses.full_audit.service import FullAuditError, FullAuditOptions, check_request, run_full_audit

    with pytest.raises(FullAuditError, match="unknown concept 'stripes': use one of random-reference or the name "
                                             "of a stored text dataset"):
        check_request("tiny-text", "1", dataset="notes", concepts=["stripes"])
    texts = ["she has a stable income .", "he has no debt .", "mr applicant has a stable income ."] * 3
    add_text_dataset("income-notes", texts, [None] * len(texts), [{}] * len(texts), label_names=[])
    res = run_full_audit("tiny-text", "1", dataset="notes", concepts=["income-notes"],
                         options=FullAuditOptions(bias_n_boot=5, tcav_n_random=3, tcav_set_size=6, tcav_n_inputs=8))
    assert "image" in res.skipped["explanations"] and "concepts" not in res.skipped
    assert res.sections["concepts"] != "MISSING"  # the report read the stored text concept test
    assert "parent" in res.skipped["drift"]
    assert _counts("tiny-text", "1").get("tcav") == 1
    assert _counts("tiny-text", "1").get("bias") == 1 and _counts("tiny-text", "1").get("text_probe") == 1
    assert res.sections["counterfactuals"] != "MISSING"  # the report read the stored text probe


def test_the_report_shows_the_maps_the_explanation_step_stored(family):
    """The explanations step explains the samples the report will show first, so the report reuses their maps
    instead of computing them again; the budget bounds the report's samples too."""
    from sqlalchemy import select

    from audit.services.core.datasets import sample_index
    from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit
    from audit.services.analyses.reports.service import FIGURE_METHODS, report_sample_keys
    from storage.db import transaction
    from storage.orm import Explanation, ModelFamily, ModelVersion

    res = run_full_audit("tiny", "1", dataset="ref", options=FullAuditOptions(
        explain_limit=3, cf_limit=1, bias_n_boot=5, cf_search={"max_iter": 5, "binary_steps": 1, "restarts": 1}))
    shown = report_sample_keys("tiny", "1", "ref", figure_samples=3)
    assert 1 <= len(shown) <= 3  # at most the budget (the picker wants distinct classes, misclassified ones)
    index = sample_index("ref")
    hashes = {index.hashes[index.keys.index(k)] for k in shown}
    with transaction() as s:
        rows = s.scalars(select(Explanation).join(ModelVersion).join(ModelFamily).where(
            ModelFamily.name == "tiny", ModelVersion.version == "1", Explanation.sample_sha256.in_(hashes))).all()
        figure_rows = [r for r in rows if r.method in FIGURE_METHODS and r.parameters.get("ig_steps") == 32
                       or r.method in FIGURE_METHODS and r.method != "integrated_gradients"]
        assert {r.sample_sha256 for r in figure_rows} == hashes
        assert {r.run_id for r in figure_rows} == {res.results["explanations"][0]}
