"""Drift engine: map similarity against independent oracles (scipy, scikit-image, plain sets) and
known answers, distributions, thresholds and the deltas read from stored summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from audit.attribution import normalize_for_display
from audit.drift import (
    DriftThresholds,
    assess_drift,
    bias_deltas,
    compare_maps,
    distribution,
    metric_deltas,
    prediction_change,
    tcav_deltas,
)


def _maps(n=6, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g)


def test_identical_maps_are_fully_similar():
    a = _maps()
    sim = compare_maps(a, a.clone())
    assert np.allclose(sim.rank_correlation, 1.0)
    assert np.allclose(sim.topk_intersection, 1.0) and np.allclose(sim.topk_iou, 1.0)
    assert np.allclose(sim.ssim, 1.0)


def test_rank_correlation_matches_scipy_on_relevance():
    a, b = _maps(seed=1), _maps(seed=2)
    b = 0.6 * a + 0.4 * b  # partly related
    sim = compare_maps(a, b)
    for i in range(a.shape[0]):
        ra = a[i].abs().sum(0).flatten().numpy()
        rb = b[i].abs().sum(0).flatten().numpy()
        assert sim.rank_correlation[i] == pytest.approx(spearmanr(ra, rb).statistic, abs=1e-9)
    assert 0.2 < sim.rank_correlation.mean() < 0.99


def test_sign_and_scale_do_not_count_as_drift():
    a = _maps(seed=3)
    sim = compare_maps(a, -5.0 * a)
    assert np.allclose(sim.rank_correlation, 1.0) and np.allclose(sim.topk_iou, 1.0)


def test_topk_overlap_matches_set_oracle():
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(5, 20, 20, generator=g), torch.rand(5, 20, 20, generator=g)
    sim = compare_maps(a, b, top_k=0.1)
    k = 40
    for i in range(5):
        sa = set(np.argsort(-a[i].flatten().numpy(), kind="stable")[:k])
        sb = set(np.argsort(-b[i].flatten().numpy(), kind="stable")[:k])
        inter = len(sa & sb)
        assert sim.topk_intersection[i] == pytest.approx(inter / k)
        assert sim.topk_iou[i] == pytest.approx(inter / len(sa | sb))


def test_topk_known_answer_disjoint_and_half():
    a = torch.zeros(1, 10, 10)
    b = torch.zeros(1, 10, 10)
    a[0, 0, :] = 1.0  # top-10% = first row
    b[0, 9, :] = 1.0  # top-10% = last row: disjoint
    sim = compare_maps(a, b, top_k=0.1)
    assert sim.topk_intersection[0] == 0.0 and sim.topk_iou[0] == 0.0
    c = torch.zeros(1, 10, 10)
    c[0, 0, :5] = 1.0
    c[0, 9, :5] = 0.9
    half = compare_maps(a, c, top_k=0.1)
    assert half.topk_intersection[0] == pytest.approx(0.5)
    assert half.topk_iou[0] == pytest.approx(5 / 15)


def test_ssim_matches_skimage_on_display_maps():
    a, b = _maps(seed=5, c=1, h=24, w=24), _maps(seed=6, c=1, h=24, w=24)
    b = a + 0.5 * b
    sim = compare_maps(a, b)
    for i in range(a.shape[0]):
        da = normalize_for_display(a[i:i + 1], mode="abs")[0].double().numpy()
        db = normalize_for_display(b[i:i + 1], mode="abs")[0].double().numpy()
        assert sim.ssim[i] == pytest.approx(structural_similarity(da, db, data_range=1.0, win_size=7), abs=1e-9)
    assert sim.ssim.mean() < 0.99


def test_cam_maps_and_resize_and_constant_maps():
    g = torch.Generator().manual_seed(7)
    base = torch.rand(3, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(base[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    sim = compare_maps(base, list(up))  # the new version works at twice the resolution
    assert sim.rank_correlation.mean() > 0.9
    zeros = torch.zeros(2, 8, 8)
    same = compare_maps(zeros, zeros.clone())
    assert np.allclose(same.rank_correlation, 1.0)
    vs_varying = compare_maps(zeros, torch.rand(2, 8, 8, generator=g))
    assert np.allclose(vs_varying.rank_correlation, 0.0)


def test_token_maps_of_different_lengths():
    base = [np.array([0.1, 0.9, -0.2, 0.0]), np.array([1.0, 2.0, 3.0])]
    new = [np.array([0.1, 0.8, -0.3, 0.05]), np.array([3.0, 2.0, 1.0])]
    sim = compare_maps(base, new, top_k=0.34)
    assert sim.rank_correlation[1] == pytest.approx(-1.0)
    assert math.isnan(sim.ssim[0])
    with pytest.raises(ValueError, match="tokenise"):
        compare_maps([np.ones(3)], [np.ones(4)])


def test_input_errors_are_actionable():
    with pytest.raises(ValueError, match="same samples"):
        compare_maps(_maps(n=3), _maps(n=4))
    with pytest.raises(ValueError, match="top_k"):
        compare_maps(_maps(), _maps(), top_k=0.0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        compare_maps(torch.zeros(2, 1, 1, 4, 4), torch.zeros(2, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="min_rank_correlation"):
        DriftThresholds(min_rank_correlation=2.0)
    with pytest.raises(ValueError, match="unknown drift threshold"):
        DriftThresholds.from_dict({"min_rank_corr": 0.5})


def test_distribution_summary():
    d = distribution(np.array([0.0, 1.0, 2.0, 3.0, 4.0, float("nan")]))
    assert d["n"] == 5 and d["mean"] == 2.0 and d["median"] == 2.0
    assert d["p10"] == pytest.approx(np.percentile([0, 1, 2, 3, 4], 10))
    assert distribution(np.array([float("nan")]))["mean"] is None


def test_assess_flags_changed_method_only():
    a = _maps(seed=8)
    unrelated = _maps(seed=9)
    res = assess_drift({"stable": a, "moved": a}, {"stable": a * 2, "moved": unrelated})
    assert not res.methods["stable"].flagged
    assert res.methods["moved"].flagged and res.flagged
    assert res.flagged_methods == ["moved"]
    summary = res.to_summary()
    assert summary["flagged"] is True and summary["methods"]["stable"]["rank_correlation"]["mean"] == pytest.approx(1.0)
    assert any("moved: mean rank correlation" in f for f in summary["flags"])
    # Thresholds can be turned off.
    off = assess_drift({"moved": a}, {"moved": unrelated},
                       thresholds=DriftThresholds(min_rank_correlation=None, min_topk_iou=None))
    assert not off.flagged
    assert res.most_changed("moved", 2) == list(np.argsort(res.methods["moved"].similarity.rank_correlation)[:2])


def test_metric_deltas_flag_accuracy_drops_only():
    out = {d.name: d for d in metric_deltas(
        {"reference_accuracy": 0.95, "loss": 0.1, "trained_with_shortcut": False, "only_base": 1.0},
        {"reference_accuracy": 0.80, "loss": 0.5, "trained_with_shortcut": True},
        max_accuracy_drop=0.05)}
    assert out["reference_accuracy"].flagged and out["reference_accuracy"].delta == pytest.approx(-0.15)
    assert not out["loss"].flagged and "trained_with_shortcut" not in out
    assert out["only_base"].new is None and not out["only_base"].flagged


def _tcav(target, score, sig, p=0.01):
    from audit.results import ConceptCell, ConceptTest

    cell = ConceptCell(concept="watermark", layer="layer3", score=score, magnitude=0.1, p_value=p,
                       p_value_corrected=p * 2, significant=sig, cav_accuracy=0.9, random_mean=0.5, random_std=0.1)
    return ConceptTest(target=target, target_label=str(target), alpha=0.05, correction="bonferroni", test="ttest",
                       n_random=10, layers=("layer3",), cells=(cell,))


def test_tcav_deltas_pair_by_target_and_flag():
    out = tcav_deltas([_tcav(7, 0.45, False, 0.4)], [_tcav(7, 0.97, True), _tcav(3, 0.2, False)],
                      max_score_change=0.3)
    assert len(out) == 1
    d = out[0]
    assert d.concept == "watermark" and d.delta == pytest.approx(0.52) and d.flagged
    assert "became significant" in d.reason and d.new_p_value == pytest.approx(0.02)
    assert d.base_score == pytest.approx(0.45) and d.new_score == pytest.approx(0.97)
    # the newest test of a class wins
    out = tcav_deltas([_tcav(7, 0.45, False)], [_tcav(7, 0.97, True), _tcav(7, 0.5, False)], max_score_change=0.3)
    assert len(out) == 1 and not out[0].flagged and out[0].new_score == pytest.approx(0.5)


def test_tcav_deltas_survive_the_stored_round_trip():
    """What the concept service writes (to_summary) and drift reads (from_summary) are one shape."""
    from audit.results import ConceptTest

    base, new = _tcav(7, 0.45, False, 0.4), _tcav(7, 0.97, True)
    again = [ConceptTest.from_summary(t.to_summary()) for t in (base, new)]
    assert again[1].cells == new.cells
    d = tcav_deltas([again[0]], [again[1]], max_score_change=0.3)[0]
    assert d.flagged and d.base_score == pytest.approx(0.45) and d.new_significant is True


def test_bias_deltas_and_prediction_change():
    b = {"dataset": "ref", "attributes": ["watermark"], "difference": {"accuracy": 0.02, "selection_rate": 0.05}}
    n = {"dataset": "ref", "attributes": ["watermark"], "difference": {"accuracy": 0.40, "selection_rate": 0.06}}
    out = {d.metric: d for d in bias_deltas([b], [n], max_disparity_increase=0.1)}
    assert out["accuracy"].flagged and not out["selection_rate"].flagged
    pc = prediction_change([1, 2, 3, 4], [1, 2, 7, 7], [1, 2, 3, 4])
    assert pc.agreement == 0.5 and pc.base_accuracy == 1.0 and pc.new_accuracy == 0.5 and pc.flagged
