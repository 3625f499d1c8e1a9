"""Explanation disparity: attribution share on a region / identity tokens per group, with known answers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from scipy.stats import spearmanr

from audit.demo.watermark import watermark_box, watermark_mask
from audit.fairness import (
    errors,
    explanation_disparity,
    identity_token_mask,
    map_disparity,
    region_masks,
    text_explanation_disparity,
)


def maps_with_share(share: float, n: int, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """Attribution maps [n, 1, H, W] of random sign whose |mass| inside `mask` is exactly `share`."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, 1, *mask.shape, generator=g, dtype=torch.float64) + 0.1
    inside = (maps * mask).flatten(1).sum(1)
    outside = (maps * ~mask).flatten(1).sum(1)
    scale_in = share / inside
    scale_out = (1 - share) / outside
    maps = torch.where(mask, maps * scale_in.view(-1, 1, 1, 1), maps * scale_out.view(-1, 1, 1, 1))
    signs = torch.where(torch.rand(maps.shape, generator=g) < 0.5, -1.0, 1.0).double()
    return maps * signs


def test_region_share_known_answer_and_worst_group():
    mask = watermark_mask(32, 32)
    a = maps_with_share(0.6, 40, mask, 0)
    b = maps_with_share(0.1, 50, mask, 1)
    res = explanation_disparity(torch.cat([a, b]), mask, ["wm"] * 40 + ["clean"] * 50, n_boot=300)
    assert res.by_group.loc["wm", "mean"] == pytest.approx(0.6)
    assert res.by_group.loc["clean", "mean"] == pytest.approx(0.1)
    assert res.difference == pytest.approx(0.5)
    assert res.worst_group == "wm"
    assert res.baseline == pytest.approx(float(mask.float().mean()))
    assert res.by_group["count"].tolist() == [50, 40]  # groups sorted: clean, wm
    np.testing.assert_allclose(res.per_sample[:40], 0.6)


def test_region_share_equals_direct_computation_and_ci_covers_mean():
    torch.manual_seed(0)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[2:6, 3:9] = True
    maps = torch.randn(120, 3, 16, 16, dtype=torch.float64)
    maps[:60, :, 2:6, 3:9] *= 3
    groups = np.array(["a"] * 60 + ["b"] * 60)
    res = explanation_disparity(maps, mask, groups, n_boot=1000, seed=3)
    direct = np.array([m.abs().sum(0)[mask].sum().item() / m.abs().sum().item() for m in maps])
    np.testing.assert_allclose(res.per_sample, direct, rtol=1e-9)
    se = {}
    for g in ["a", "b"]:
        vals = direct[groups == g]
        row = res.by_group.loc[g]
        assert row["mean"] == pytest.approx(vals.mean())
        # percentile bootstrap of a mean ~ normal interval mean +- 1.96 * sd / sqrt(n)
        se[g] = vals.std(ddof=1) / np.sqrt(len(vals))
        assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * 1.96 * se[g], rel=0.2)
        assert (row["ci_high"] + row["ci_low"]) / 2 == pytest.approx(row["mean"], abs=0.3 * se[g])
    # the groups are far apart, so the gap is mean_a - mean_b and its interval is the normal one
    assert res.difference == pytest.approx(direct[:60].mean() - direct[60:].mean())
    low, high = res.difference_ci
    assert high - low == pytest.approx(2 * 1.96 * np.hypot(se["a"], se["b"]), rel=0.2)
    assert (low + high) / 2 == pytest.approx(res.difference, abs=0.3 * np.hypot(se["a"], se["b"]))
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["difference_ci"] == pytest.approx([low, high])


def test_region_zero_maps_excluded_and_small_groups_flagged():
    mask = watermark_mask(8, 8)
    maps = torch.rand(10, 8, 8)
    maps[3] = 0
    res = explanation_disparity(maps, mask, ["x"] * 5 + ["y"] * 5, n_boot=0, min_group_size=5)
    assert res.n_excluded == 1 and res.n_without_region == 0 and np.isnan(res.per_sample[3])
    assert any("zero attribution everywhere" in w for w in res.warnings)
    assert res.by_group.loc["x", "count"] == 4
    assert res.small_groups == ["x"]
    assert np.isnan(res.by_group.loc["x", "ci_low"]) and res.difference_ci is None


@pytest.mark.parametrize(
    ("maps", "mask", "groups", "message"),
    [
        (torch.rand(4, 8), torch.ones(8, 8, dtype=torch.bool), ["a"] * 4, errors.ATTR_SHAPE),
        (torch.rand(4, 8, 8), torch.ones(4, 4, dtype=torch.bool), ["a"] * 4, errors.MASK_SHAPE),
        (torch.rand(4, 8, 8), torch.ones(3, 8, 8, dtype=torch.bool), ["a"] * 4, errors.MASK_SHAPE),
        (torch.rand(4, 8, 8), torch.ones(8, 8), ["a"] * 4, errors.MASK_SHAPE),
        (torch.rand(4, 8, 8), torch.ones(8, 8, dtype=torch.bool), ["a"] * 3, errors.GROUP_COUNT_MISMATCH),
        (torch.rand(4, 8, 8), torch.ones(8, 8, dtype=torch.bool), ["a", None, "b", "b"], errors.NAN_GROUPS),
    ],
)
def test_region_bad_input(maps, mask, groups, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        explanation_disparity(maps, mask, groups)


def test_identity_token_mask_handles_word_pieces():
    tokens = ["[CLS]", "she", "met", "her", "grand", "##mother", "and", "heroes", "[SEP]"]
    mask = identity_token_mask(tokens, terms={"she", "her", "grandmother"})
    assert mask.tolist() == [False, True, False, True, True, True, False, False, False]
    sp = ["<s>", "▁She", "▁met", "▁grand", "mother", "▁today", "</s>"]
    assert identity_token_mask(sp, terms={"she", "grandmother"}).tolist() == [
        False, True, False, True, True, False, False]
    assert identity_token_mask(["[CLS]", "john", "left"]).tolist() == [False, True, False]  # default lists


def test_text_share_known_answer_excludes_texts_without_identity_tokens():
    scores = [np.array([0.0, 3.0, -1.0, 0.0]), np.array([0.0, 1.0, 1.0, 2.0]), np.array([5.0, 1.0])]
    masks = [np.array([0, 1, 0, 0], bool), np.array([0, 1, 0, 0], bool), np.array([0, 0], bool)]
    res = text_explanation_disparity(scores, masks, ["f", "m", "m"], n_boot=100)
    assert res.per_sample[0] == pytest.approx(0.75)
    assert res.per_sample[1] == pytest.approx(0.25)
    assert np.isnan(res.per_sample[2])
    assert res.n_excluded == 1
    assert res.by_group.loc["m", "count"] == 1
    assert res.worst_group == "f"
    assert res.baseline == pytest.approx(0.25)
    assert any("no identity token" in w for w in res.warnings)
    with pytest.raises(ValueError, match=re.escape(errors.TOKEN_MASK_MISMATCH)):
        text_explanation_disparity([np.ones(3)], [np.ones(2, bool)], ["a"])
    with pytest.raises(ValueError, match=re.escape(errors.TOKEN_MASK_MISMATCH)):
        text_explanation_disparity([np.ones(3)], [], ["a"])


# --- declared regions ----------------------------------------------------------------------------------


def test_region_masks_scale_boxes_to_the_map_size():
    same = region_masks([[1, 2, 4, 3], None], image_size=(8, 8))
    assert same.shape == (2, 8, 8) and not same[1].any()
    assert same[0].nonzero().tolist() == [[2, 1], [2, 2], [2, 3]]  # row 2, columns 1..3 (x1 exclusive)
    double = region_masks([[4, 8, 10, 12]], image_size=(32, 32), map_size=(64, 64))[0]
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[16:24, 8:20] = True
    assert torch.equal(double, expected)
    # 1.5x: edges rounded outwards, [1.5, 4.5) -> pixels 1..4
    odd = region_masks([[1, 1, 3, 3]], image_size=(32, 32), map_size=(48, 48))[0]
    assert odd.nonzero()[:, 0].unique().tolist() == [1, 2, 3, 4]
    # non-square: width and height scale separately
    wide = region_masks([[0, 0, 2, 2]], image_size=(4, 4), map_size=(8, 16))[0]
    assert wide.sum() == 4 * 8 and wide[:4, :8].all()


def test_demo_watermark_box_as_a_region_is_the_watermark_mask():
    top, left, bottom, right = watermark_box(32, 32)
    mask = region_masks([[left, top, right, bottom]], image_size=(32, 32))[0]
    assert torch.equal(mask, watermark_mask(32, 32))


@pytest.mark.parametrize("box", [[0, 0, 9, 4], [3, 3, 3, 5], [-1, 0, 2, 2], [0, 0, 2]])
def test_region_masks_reject_boxes_outside_the_image(box):
    with pytest.raises(ValueError, match=re.escape(errors.BAD_REGION)):
        region_masks([box], image_size=(8, 8))


def test_per_sample_regions_exclude_samples_without_one():
    g = torch.Generator().manual_seed(4)
    maps = torch.rand(6, 8, 8, generator=g, dtype=torch.float64)
    regions = [[0, 0, 4, 4], [4, 4, 8, 8], None, [0, 0, 8, 2], None, [2, 2, 6, 6]]
    masks = region_masks(regions, image_size=(8, 8))
    res = explanation_disparity(maps, masks, ["a", "a", "a", "b", "b", "b"], n_boot=0)
    direct = [float(maps[i][masks[i]].sum() / maps[i].sum()) if regions[i] else np.nan for i in range(6)]
    np.testing.assert_allclose(res.per_sample, direct)
    assert res.n_without_region == 2 and res.n_excluded == 2
    assert res.by_group.loc["a", "count"] == 2 and res.by_group.loc["b", "count"] == 2
    assert res.by_group.loc["a", "mean"] == pytest.approx((direct[0] + direct[1]) / 2)
    # baseline: the mean area of the regions used (16, 16, 16, 16 pixels of 64)
    assert res.baseline == pytest.approx(0.25)
    assert any("2 sample(s) declare no region" in w for w in res.warnings)


# --- region-free comparison ----------------------------------------------------------------------------


def test_map_disparity_known_answer_for_disjoint_and_identical_groups():
    maps = torch.zeros(8, 1, 4, 4)
    maps[:4, :, :, :2] = 1.0  # group a attends to the left half
    maps[4:, :, :, 2:] = -2.0  # group b to the right half (sign and scale do not matter)
    res = map_disparity(maps, ["a"] * 4 + ["b"] * 4, n_perm=2000)
    assert res.difference == pytest.approx(1.0)  # disjoint distributions
    assert res.most_different == ("a", "b")
    np.testing.assert_allclose(res.mean_maps["a"][:, :2], 1 / 8)
    np.testing.assert_allclose(res.mean_maps["a"][:, 2:], 0)
    ref_rho = spearmanr(res.mean_maps["a"].ravel(), res.mean_maps["b"].ravel()).statistic
    assert res.min_rank_correlation == pytest.approx(ref_rho) and ref_rho == pytest.approx(-1.0)
    # exact permutation p-value: 2 of the C(8, 4) = 70 labellings separate the halves completely
    assert res.p_value == pytest.approx(2 / 70, abs=0.01)
    # null: with k of the left-type maps relabelled "a" the gap is |2k - 4| / 4, k hypergeometric
    assert res.null_difference == pytest.approx(18 / 70, abs=0.03)
    same = map_disparity(torch.cat([maps[:4], maps[:4]]), ["a"] * 4 + ["b"] * 4, n_perm=50)
    assert same.difference == pytest.approx(0.0, abs=1e-12) and same.p_value == pytest.approx(1.0)


def test_map_disparity_matches_direct_computation_on_random_maps():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(30, 3, 6, 6, generator=g, dtype=torch.float64)
    maps[3] = 0  # no distribution: excluded
    groups = np.array(["x"] * 10 + ["y"] * 10 + ["z"] * 10)
    res = map_disparity(maps, groups, n_perm=0)
    flat = maps.abs().sum(1).flatten(1).numpy()
    keep = flat.sum(1) > 0
    dist = flat[keep] / flat[keep].sum(1, keepdims=True)
    means = {k: dist[groups[keep] == k].mean(0) for k in "xyz"}
    tv = {(a, b): 0.5 * np.abs(means[a] - means[b]).sum() for a, b in [("x", "y"), ("x", "z"), ("y", "z")]}
    got = {(r.group_a, r.group_b): r.total_variation for r in res.pairs.itertuples()}
    assert got == pytest.approx(tv)
    rho = {k: spearmanr(means[k[0]], means[k[1]]).statistic for k in tv}
    assert dict(zip(got, res.pairs["rank_correlation"])) == pytest.approx(rho)
    assert res.difference == pytest.approx(max(tv.values()))
    assert res.n_excluded == 1 and res.by_group["count"].tolist() == [9, 10, 10]
    assert np.isnan(res.p_value) and np.isnan(res.null_difference)
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["most_different"] == list(max(tv, key=tv.get))


def test_map_disparity_needs_two_groups_with_maps():
    maps = torch.rand(4, 4, 4)
    maps[2:] = 0
    with pytest.raises(ValueError, match=re.escape(errors.TOO_FEW_GROUPS)):
        map_disparity(maps, ["a", "a", "b", "b"])
    with pytest.raises(ValueError, match=re.escape(errors.BAD_N_PERM)):
        map_disparity(torch.rand(4, 4, 4), ["a", "a", "b", "b"], n_perm=-1)
