"""Known answers for relevance mass accuracy and the pointing game."""

from __future__ import annotations

import math

import pytest
import torch

from audit.quality import POINTING_GAME, RELEVANCE_MASS, localisation
from audit.quality.localisation import BAD_BOX, BAD_COUNT, BAD_MAPS


def _map(h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.zeros(1, h, w)


def test_all_mass_inside_scores_one():
    m = _map()
    m[0, 2:4, 3:6] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    res = localisation(m, [[3, 2, 6, 4]])
    assert res.relevance_mass[0].item() == pytest.approx(1.0)
    assert res.pointing_game[0].item() == 1.0


def test_half_inside_scores_half_and_x1_is_exclusive():
    m = _map()
    m[0, 0, 0] = 1.0  # inside [0, 0, 1, 1]
    m[0, 0, 1] = 1.0  # at x == x1: outside
    res = localisation(m, [[0, 0, 1, 1]])
    assert res.relevance_mass[0].item() == pytest.approx(0.5)


def test_negative_relevance_counts_by_magnitude_unless_clipped():
    m = _map()
    m[0, 1, 1] = 1.0
    m[0, 6, 6] = -3.0
    box = [[0, 0, 3, 3]]
    assert localisation(m, box).relevance_mass[0].item() == pytest.approx(0.25)
    assert localisation(m, box).pointing_game[0].item() == 0.0  # |-3| is the maximum
    clipped = localisation(m, box, absolute=False)
    assert clipped.relevance_mass[0].item() == pytest.approx(1.0)
    assert clipped.pointing_game[0].item() == 1.0


def test_channels_are_summed_before_scoring():
    m = torch.zeros(1, 3, 4, 4)
    m[0, 0, 0, 0], m[0, 1, 0, 0] = 2.0, -2.0  # cancels to 0 once summed
    m[0, 2, 3, 3] = 1.0
    res = localisation(m, [[0, 0, 1, 1]])
    assert res.relevance_mass[0].item() == pytest.approx(0.0)
    assert res.pointing_game[0].item() == 0.0


def test_pointing_game_inside_outside_and_tolerance():
    m = torch.zeros(2, 8, 8)
    m[0, 5, 5] = 9.0
    m[0, 1, 1] = 1.0
    m[1, 1, 1] = 9.0
    m[1, 5, 5] = 1.0
    res = localisation(m, [[4, 4, 7, 7], [4, 4, 7, 7]])
    assert res.pointing_game.tolist() == [1.0, 0.0]
    assert res.pointing_game_mean == pytest.approx(0.5)
    # (1, 1) to the box's nearest pixel (4, 4) is 3 * sqrt(2) ~ 4.24 pixels
    assert localisation(m, [None, [4, 4, 7, 7]], tolerance=4.2).pointing_game[1].item() == 0.0
    assert localisation(m, [None, [4, 4, 7, 7]], tolerance=4.25).pointing_game[1].item() == 1.0


def test_box_on_the_image_border():
    m = torch.ones(1, 6, 10)
    res = localisation(m, [[5, 3, 10, 6]])  # bottom-right quarter, touching both far edges
    assert res.relevance_mass[0].item() == pytest.approx(15 / 60)
    whole = localisation(m, [[0, 0, 10, 6]])
    assert whole.relevance_mass[0].item() == pytest.approx(1.0)
    assert whole.pointing_game[0].item() == 1.0


def test_none_boxes_are_nan_and_left_out_of_the_means():
    m = torch.zeros(3, 4, 4)
    m[:, 0, 0] = 1.0
    m[2, 3, 3] = 3.0
    res = localisation(m, [[0, 0, 2, 2], None, [0, 0, 2, 2]])
    assert math.isnan(res.relevance_mass[1].item()) and math.isnan(res.pointing_game[1].item())
    assert res.relevance_mass[0].item() == pytest.approx(1.0)
    assert res.relevance_mass[2].item() == pytest.approx(0.25)
    assert res.relevance_mass_mean == pytest.approx(0.625)
    assert res.pointing_game_mean == pytest.approx(0.5)
    assert math.isnan(localisation(m, [None, None, None]).relevance_mass_mean)


def test_all_zero_map_has_no_score():
    res = localisation(torch.zeros(1, 4, 4), [[0, 0, 2, 2]])
    assert math.isnan(res.relevance_mass[0].item()) and math.isnan(res.pointing_game[0].item())


@pytest.mark.parametrize("box", [[0, 0, 9, 4], [-1, 0, 2, 2], [2, 0, 2, 3], [3, 0, 1, 2], [0, 3, 2, 1], [0, 0, 2]])
def test_bad_boxes_are_refused(box):
    with pytest.raises(ValueError) as err:
        localisation(torch.ones(1, 4, 8), [box])
    assert BAD_BOX in str(err.value) and "sample 0" in str(err.value)


def test_bad_shapes_and_counts_are_refused():
    with pytest.raises(ValueError, match="maps must be a batch"):
        localisation(torch.ones(4, 4), [[0, 0, 1, 1]])
    assert BAD_MAPS.startswith("maps must")
    with pytest.raises(ValueError) as err:
        localisation(torch.ones(2, 4, 4), [[0, 0, 1, 1]])
    assert BAD_COUNT in str(err.value)
    with pytest.raises(ValueError, match="tolerance"):
        localisation(torch.ones(1, 4, 4), [[0, 0, 1, 1]], tolerance=-1)


def test_specs_declare_higher_is_better():
    assert RELEVANCE_MASS.direction == POINTING_GAME.direction == "higher"
    assert RELEVANCE_MASS.better(0.9, 0.1) and POINTING_GAME.value_range == (0.0, 1.0)
