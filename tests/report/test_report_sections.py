"""Section builders without a database, fed what the real services produced (contract tests): the
concept section on the demo's stored concept test, the quality section on the real checks of a small
model, the performance section and the statistics it prints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audit.report import Table
from audit.report import stats
from audit.report.checks import ExplanationQuality, explanation_quality
from audit.report.sections import (
    ModelFacts,
    ReferencePredictions,
    concepts_section,
    performance_section,
    quality_section,
)
from audit.report.sections.concepts import COLUMNS
from audit.results.concepts import ConceptTest

LABELS = [str(i) for i in range(10)]



def _label_to_id() -> dict[str, str]:
    from audit.attribution.registry import registered

    return {cls.label: name for name, cls in registered().items()}


_IDS = _label_to_id()

def _model(family: str = "digits-cnn", version: str = "2", **info) -> ModelFacts:
    return ModelFacts(family, version, "", {"id": 1, "sha256": "ab" * 32, "task": "image-classification",
                                            "labels": LABELS, "status": "draft", **info})


def _cell_text(v: float) -> str:
    """How the report prints a number: 4 decimals, scientific below 1e-3 (written out here, independently)."""
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def _tables(sec, columns=None) -> list[Table]:
    return [b for b in sec.blocks if isinstance(b, Table) and (columns is None or b.columns == columns)]


def test_concept_section_has_a_row_per_stored_cell_with_its_numbers(demo_concept_test):
    # The numbers come from the stored JSON itself, not from the typed reader the section uses.
    raw = demo_concept_test.summary["concepts"]
    expected = {(c, layer): d for c, entry in raw.items() for layer, d in entry["layers"].items()}
    assert len(expected) == 4  # 2 concepts x the 2 default layers
    sec = concepts_section(_model(), [ConceptTest.from_stored(demo_concept_test)])
    (table,) = _tables(sec, COLUMNS)
    rows = {(r[0], r[1]): r for r in table.rows}
    assert set(rows) == set(expected)
    for key, d in expected.items():
        row = rows[key]
        assert row[2] == _cell_text(d["score"]), key
        assert row[3] == f"{d['random_mean']:.3f} +/- {d['random_std']:.3f}", key
        assert row[4] == _cell_text(d["magnitude"]), key
        assert row[5] == _cell_text(d["p_value"]) and row[6] == _cell_text(d["p_value_corrected"]), key
        assert row[7] == ("yes" if d["significant"] else "no"), key
        assert row[8] == _cell_text(d["cav_accuracy"]), key
    assert sec.sources[0].id == demo_concept_test.id and sec.sources[0].sha256 == demo_concept_test.pin
    assert not sec.missing


def test_concept_summary_counts_the_significant_tests(demo_concept_test):
    raw = demo_concept_test.summary["concepts"]
    significant = [f"{c}@{layer}" for c, entry in raw.items() for layer, d in entry["layers"].items()
                   if d["significant"]]
    # The demo's planted shortcut: the watermark is significant at both layers, the random control nowhere.
    assert sorted(significant) == [f"watermark@{layer}" for layer in sorted(raw["watermark"]["layers"])]
    sec = concepts_section(_model(), [ConceptTest.from_stored(demo_concept_test)])
    (finding,) = sec.findings
    assert finding.section == "concepts" and finding.status == "info"
    assert finding.detail.startswith(f"{len(significant)} of 4 concept/layer tests significant: ")
    assert sorted(finding.detail.split(": ", 1)[1].split(", ")) == sorted(significant)


def test_a_concept_significant_below_random_is_not_listed_as_relied_on(demo_concept_test):
    import dataclasses

    test = ConceptTest.from_stored(demo_concept_test)
    sig = [c for c in test.cells if c.significant]
    assert len(sig) == 2 and not any(c.lowers_class for c in sig)  # the demo's watermark raises class 7
    # The same stored test with its first significant cell mirrored below the random mean, as the concept
    # service stores a concept that pushes inputs away from the class.
    flipped = dataclasses.replace(sig[0], score=sig[0].random_mean - abs(sig[0].score - sig[0].random_mean))
    assert flipped.lowers_class
    cells = tuple(flipped if c is sig[0] else c for c in test.cells)
    (finding,) = concepts_section(_model(), [dataclasses.replace(test, cells=cells)]).findings
    first, second = (f"{c.concept}@{c.layer}" for c in sig)
    assert finding.detail == (f"2 of 4 concept/layer tests significant: {second}; below random, the concept "
                              f"lowers the class score: {first}")


def test_concept_section_without_a_stored_test_says_how_to_run_one():
    sec = concepts_section(_model("tiny", "3"), [])
    assert not _tables(sec)
    assert "python -m audit tcav --family tiny --version 3" in sec.missing[0]
    assert [(f.status, f.detail) for f in sec.findings] == [("missing", "no stored TCAV result")]


def test_quality_section_reads_the_checks_the_engine_computed():
    from audit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(3, 1, 32, 32)
    maps = {"saliency": torch.rand(3, 1, 32, 32).numpy(), "edge": torch.zeros(3, 32, 32).numpy()}
    q = explanation_quality(model, x, [1, 2, 3], maps, layer=None, steps=5, sanity_methods=["saliency"],
                            sanity_samples=2, sanity_max_steps=2, ig_steps=4)
    # What the service stores is JSON: read it back the way the report does.
    back = ExplanationQuality.from_summary(json.loads(json.dumps(q.to_summary())))
    assert back == q and back.methods == ("saliency", "edge") and back.sanity.samples == 2
    sec = quality_section(_model(), quality=back, curve_steps=5)
    table = _tables(sec)[0]
    # Rows name methods by label; key them back by identifier.
    by_method = {_IDS.get(r[0], r[0]): r for r in table.rows}
    for m in ("saliency", "edge"):
        assert by_method[m][1] == _cell_text(q.deletion_auc[m]) and by_method[m][2] == _cell_text(q.insertion_auc[m])
        assert by_method[m][3] == ("yes" if q.deletion_auc[m] < q.deletion_auc["random"] else "no")
    assert by_method["random map (reference)"][1] == _cell_text(q.deletion_auc["random"])
    checks = {f.check: f for f in sec.findings}
    worse = [m for m in ("saliency", "edge") if not q.deletion_auc[m] < q.deletion_auc["random"]]
    assert checks["deletion AUC below a random map's"].status == ("fail" if worse else "pass")
    assert "sanity check (model randomisation)" in checks


def test_quality_checks_refuse_a_target_count_that_does_not_match():
    from audit.models.zoo import SmallCNN

    with pytest.raises(ValueError, match="one target per input"):
        explanation_quality(SmallCNN(width=8).eval(), torch.rand(2, 1, 32, 32), [1], {}, layer=None, steps=3,
                            sanity_methods=[], sanity_samples=0)


def test_wilson_interval_matches_the_published_values():
    lo, hi = stats.wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    assert all(np.isnan(stats.wilson_interval(0, 0)))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.wilson_interval(11, 10)


def test_group_accuracy_and_per_class_rates():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 0, 2]
    groups = [{"site": "A"}, {"site": "A"}, {"site": "B"}, {"site": "B"}, {"site": "B"}, {"site": "A"}]
    by_group = {(g.attribute, g.group): g.accuracy for g in stats.group_accuracy(y, p, groups)}
    assert (by_group["site", "A"].correct, by_group["site", "A"].n) == (2, 3)
    assert (by_group["site", "B"].correct, by_group["site", "B"].n) == (2, 3)
    cm = stats.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rates = stats.per_class_rates(cm, ["a", "b", "c"])
    assert [(r.recall, r.precision) for r in rates] == [(0.5, 0.5), (1.0, 2 / 3), (0.5, 1.0)]
    with pytest.raises(ValueError, match="y_true has 2 entries but y_pred has 3"):
        stats.accuracy([0, 1], [0, 1, 1])


def test_performance_section_prints_accuracy_with_its_interval_and_checks_the_threshold():
    probs = np.eye(10)[[3, 3, 5, 1, 1, 0, 2, 3, 3, 4]]  # predicted classes
    labels = [3, 3, 5, 1, 2, 0, 2, 3, None, 9]  # 7 of the 9 labelled samples are right
    preds = ReferencePredictions("ref", [f"s-{i}" for i in range(10)], labels, [{"site": "AB"[i % 2]} for i in range(10)],
                                 probs)
    sec = performance_section(_model(metrics={"reference_accuracy": 0.5}), preds, min_accuracy=0.8)
    lo, hi = stats.wilson_interval(7, 9)
    text = " ".join(b.text for b in sec.blocks if hasattr(b, "text"))
    assert f"{7 / 9:.4f} (7 of 9 correct; 95% Wilson interval {lo:.4f} to {hi:.4f})" in text
    (finding,) = sec.findings
    assert (finding.status, finding.detail) == ("fail", f"accuracy {7 / 9:.4f} on ref")
    group_rows = _tables(sec, ["Attribute", "Group", "Samples", "Accuracy", "95% CI (Wilson)"])[0].rows
    # site A: samples 0, 2, 4, 6 (all labelled): 0, 2, 6 right; site B: 1, 3, 5, 7, 9: 1, 3, 5, 7 right.
    assert [r[:4] for r in group_rows] == [["site", "A", 4, "0.7500"], ["site", "B", 5, "0.8000"]]
    assert sec.sources[0].kind == "predictions" and sec.sources[0].sha256 == preds.sha256
    # Without a reference set the registration metric stands in, and says so.
    stored = performance_section(_model(metrics={"reference_accuracy": 0.95}), None, min_accuracy=0.9)
    assert [(f.status, f.detail) for f in stored.findings] == [("pass", "accuracy 0.9500 (stored)")]


def test_reference_predictions_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="give one per sample"):
        ReferencePredictions("ref", ["a", "b"], [0], [{}, {}], np.zeros((2, 3)))


def test_sanity_verdicts_tell_undefined_from_unchanged():
    """Randomising SmallCNN zeroes its Grad-CAM: the report says "undefined", never "insensitive"."""
    from audit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(3, 1, 32, 32)
    maps = {"gradcam": torch.rand(3, 32, 32).numpy()}
    q = explanation_quality(model, x, [1, 2, 3], maps, layer=None, steps=5, sanity_methods=["gradcam", "saliency"],
                            sanity_samples=2, ig_steps=4)
    back = ExplanationQuality.from_summary(json.loads(json.dumps(q.to_summary())))
    assert back.sanity.status == q.sanity.status and back.sanity.status["gradcam"] == "undefined"
    sec = quality_section(_model(), quality=back, curve_steps=5)
    verdicts = {_IDS.get(r[0], r[0]): r[2] for r in _tables(sec)[1].rows}
    assert verdicts["gradcam"] == "undefined" and verdicts["saliency"] == back.sanity.status["saliency"]
    detail = {f.check: f for f in sec.findings}["sanity check (model randomisation)"].detail
    assert "undefined (constant maps): Grad-CAM" in detail and "insensitive to the model: Grad-CAM" not in detail
