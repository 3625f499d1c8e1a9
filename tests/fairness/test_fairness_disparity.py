"""Explanation disparity: attribution share on a region / identity tokens per group, with known answers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from audit.demo.watermark import watermark_mask
from audit.fairness import errors, explanation_disparity, identity_token_mask, text_explanation_disparity


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
    for g in ["a", "b"]:
        vals = direct[groups == g]
        row = res.by_group.loc[g]
        assert row["mean"] == pytest.approx(vals.mean())
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        # percentile bootstrap of a mean ~ normal interval of half-width 1.96 * sd / sqrt(n)
        expected = 2 * 1.96 * vals.std(ddof=1) / np.sqrt(len(vals))
        assert row["ci_high"] - row["ci_low"] == pytest.approx(expected, rel=0.2)
    low, high = res.difference_ci
    assert low <= res.difference <= high
    json.dumps(res.to_dict(), allow_nan=False)


def test_region_zero_maps_excluded_and_small_groups_flagged():
    mask = watermark_mask(8, 8)
    maps = torch.rand(10, 8, 8)
    maps[3] = 0
    res = explanation_disparity(maps, mask, ["x"] * 5 + ["y"] * 5, n_boot=0, min_group_size=5)
    assert res.n_excluded == 1 and np.isnan(res.per_sample[3])
    assert res.by_group.loc["x", "count"] == 4
    assert res.small_groups == ["x"]
    assert np.isnan(res.by_group.loc["x", "ci_low"]) and res.difference_ci is None


@pytest.mark.parametrize(
    ("maps", "mask", "groups", "message"),
    [
        (torch.rand(4, 8), torch.ones(8, 8, dtype=torch.bool), ["a"] * 4, errors.ATTR_SHAPE),
        (torch.rand(4, 8, 8), torch.ones(4, 4, dtype=torch.bool), ["a"] * 4, errors.MASK_SHAPE),
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
