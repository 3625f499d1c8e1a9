"""Concept-test, bias, counterfactual and text services on tiny registries: stored, cached, validated."""

from __future__ import annotations

import pytest

from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.analyses.concepts.service import ConceptError, run_concept_test
from audit.services.core.runs import stored_analyses
from audit.services.analyses.counterfactuals.service import counterfactual_for_sample, run_reference_counterfactuals
from audit.services.analyses.fairness.service import BiasAuditError, run_bias_audit, run_text_probe
from audit.services.analyses.text.service import explain_texts, method_agreement

VIEWER = Principal("v", "viewer")


def test_concept_test_is_stored_and_reused(tiny_image):
    kwargs = dict(concepts=["watermark", "random-reference"], target=3, dataset="ref", n_random=3, set_size=6,
                  n_inputs=5)
    with pytest.raises(ConceptError, match="only"):
        run_concept_test("tiny", "1", **kwargs)  # class 3 has too few samples in 'ref' (3 of 24)
    kwargs["target"] = 1
    kwargs["n_inputs"] = 3
    with pytest.raises(ConceptError):
        run_concept_test("tiny", "1", **dict(kwargs, n_random=1))
    with pytest.raises(PermissionDenied):
        run_concept_test("tiny", "1", actor=VIEWER, **kwargs)


def test_bias_audit_reports_progress_and_a_stop_there_stores_nothing(tiny_image):
    from storage.db import transaction
    from storage.orm import Run

    calls = []
    run_bias_audit("tiny", "1", dataset="ref", attributes=["site"], n_boot=5, explanation_method="saliency",
                   progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    messages = " | ".join(m for _, m in calls)
    for step in ("predicting ref", "group metrics with 5 bootstrap", "explanation disparity: "):
        assert step in messages, messages
    assert any(0 < f < 1 and "explanation disparity: " in m for f, m in calls)  # per batch of explanations

    class Stop(Exception):
        pass

    def stop_at_metrics(fraction, message):
        if message.startswith("group metrics"):
            raise Stop(message)

    with pytest.raises(Stop):
        run_bias_audit("tiny", "1", dataset="ref", attributes=["site"], n_boot=7, progress=stop_at_metrics)
    assert [r.summary.get("n_boot") for r in stored_analyses("tiny", "1", "bias")] == [5]
    with transaction() as s:
        last = s.query(Run).filter(Run.kind == "bias").order_by(Run.id.desc()).first()
        assert last.status == "failed" and "group metrics" in last.error


def test_bias_audit_per_group_and_validation(tiny_image):
    res = run_bias_audit("tiny", "1", dataset="ref", attributes=["site"], n_boot=20)
    assert {g.group for g in res.by_group} == {"A", "B"}
    assert {g.group: g.count for g in res.by_group} == {"A": 16, "B": 8}  # site B is every third sample
    assert all("accuracy" in g.intervals for g in res.by_group)
    assert any("fewer than" in f for f in res.flags)  # both groups are below the default minimum size
    again = run_bias_audit("tiny", "1", dataset="ref", attributes=["site"], n_boot=20)
    assert again.result_id == res.result_id and again.stored.cached
    inter = run_bias_audit("tiny", "1", dataset="ref", attributes=["site", "watermark"], n_boot=0)
    assert len(inter.by_group) == 4
    with pytest.raises(BiasAuditError, match="not recorded"):
        run_bias_audit("tiny", "1", dataset="ref", attributes=["gender"])
    with pytest.raises(ValueError):
        run_bias_audit("tiny", "1", dataset="ref", attributes=[], csv_bytes=b"")
    with pytest.raises(ValueError):
        run_bias_audit("tiny", "1", dataset="ref", attributes=[], csv_bytes=b"sample_id,site\nnope-1,A\n")
    csv = "sample_id,region\n" + "\n".join(f"ref-{i:04d},{'north' if i < 12 else 'south'}" for i in range(24))
    byc = run_bias_audit("tiny", "1", dataset="ref", attributes=[], csv_bytes=csv.encode())
    assert {g.group: g.count for g in byc.by_group} == {"north": 12, "south": 12}
    assert len(stored_analyses("tiny", "1", "bias")) == 3


def test_counterfactuals_stay_in_range_and_are_stored(tiny_image):
    budget = {"max_iter": 30, "restarts": 1, "binary_steps": 2}
    cf = counterfactual_for_sample("tiny", "1", dataset="ref", sample_key="ref-0002", **budget)
    assert cf.counterfactual.dtype.name == "uint8" and cf.counterfactual.shape == (1, 32, 32)
    assert cf.valid == (cf.cf_class != cf.original_class)
    res = run_reference_counterfactuals("tiny", "1", dataset="ref", limit=4, **budget)
    assert res.n == 4 and [o.sample for o in res.per_sample] == [f"ref-{i:04d}" for i in range(4)]
    assert res.valid_rate == sum(o.valid for o in res.per_sample) / 4


def test_text_explanations_stored_and_reused(tiny_text):
    first = explain_texts("tiny-text", "1", ["she has a stable income ."],
                          methods=["integrated_gradients", "occlusion"], options={"ig_steps": 8})[0]
    assert first["tokens"][0] == "[CLS]" and len(first["scores"]["occlusion"]) == len(first["tokens"])
    assert not any(first["cached"].values())
    again = explain_texts("tiny-text", "1", ["she has a stable income ."],
                          methods=["integrated_gradients", "occlusion"], options={"ig_steps": 8})[0]
    assert all(again["cached"].values())
    names, m = method_agreement(first)
    assert names == ["integrated_gradients", "occlusion"] and m.shape == (2, 2)
    with pytest.raises(ValueError, match="non-empty"):
        explain_texts("tiny-text", "1", ["   "], methods=["occlusion"])


def test_text_probe_runs_on_gendered_texts(tiny_text):
    res = run_text_probe("tiny-text", "1", dataset="notes")
    assert res.n == 40 and res.flip_rate == sum(e.flipped for e in res.examples) / res.n  # (< 10 flips here)
    with pytest.raises(PermissionDenied):
        run_text_probe("tiny-text", "1", dataset="notes", actor=VIEWER)
