"""Pure parts of the import engine: member-name normalisation and box scaling."""

from __future__ import annotations

import pytest

from audit.datasets import scale_box
from audit.datasets.sources import normalise_member


@pytest.mark.parametrize("name, expected", [
    ("a.png", "a.png"), ("./sub//b.png", "sub/b.png"), ("sub\\c.png", "sub/c.png"), ("sub/../d.png", "d.png"),
    ("../e.png", None), ("/abs.png", None), ("C:/win.png", None), ("a/../../f.png", None), ("..", None),
])
def test_member_names_are_normalised_or_refused(name, expected):
    assert normalise_member(name) == expected


def test_boxes_scale_with_the_image_and_grow_to_whole_pixels():
    assert scale_box([0, 0, 10, 10], (10, 10), (20, 20)) == [0, 0, 20, 20]
    assert scale_box([1, 1, 2, 2], (3, 3), (2, 2)) == [0, 0, 2, 2]   # 0.67..1.33 -> 0..2
    assert scale_box([5, 2, 7, 9], (10, 10), (10, 10)) == [5, 2, 7, 9]
    x0, y0, x1, y1 = scale_box([3, 3, 4, 4], (100, 100), (7, 7))     # a tiny box stays non-empty
    assert x1 > x0 and y1 > y0
