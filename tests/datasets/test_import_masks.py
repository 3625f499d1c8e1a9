"""Region masks (``--mask-column``): imported with their images, validated like them (every problem named
with its row, nothing stored), and scored by localisation and explanation disparity exactly as boxes are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.services.core.datasets import DatasetValidationError, import_image_dataset, load_image_samples
from tests.datasets.conftest import write_csv, write_image

HEADER = ["path", "label", "site", "mask"]


def _write_mask(path: Path, mask: np.ndarray, *, mode: str = "L") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":  # index 0 is white and index 1 black: only the pixels' colours say which is the region
        img = Image.fromarray(np.where(mask, 0, 1).astype(np.uint8), "P")
        img.putpalette([255, 255, 255, 0, 0, 0])
    else:
        img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").convert(mode)
    img.save(path)
    return path


def _l_shape(h: int, w: int) -> np.ndarray:
    """An L-shaped region (no box describes it): the left column strip and the bottom row strip."""
    m = np.zeros((h, w), dtype=bool)
    m[4:h - 4, 2:6] = True
    m[h - 8:h - 4, 2:w - 4] = True
    return m


@pytest.fixture()
def masked_folder(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Three 32x32 images with an L-shaped mask (one as RGB, one as a palette image with value 1), one
    48x40 image whose rectangular mask is scaled with it, one image without a region."""
    folder = tmp_path / "imgs"
    masks = {"a": _l_shape(32, 32), "b": np.zeros((32, 32), dtype=bool), "e": np.zeros((40, 48), dtype=bool)}
    masks["b"][10:20, 5:9] = True
    masks["e"][8:20, 12:30] = True
    for i, n in enumerate(["a", "b", "c", "d"]):
        write_image(folder / f"{n}.png", (32, 32), seed=i)
    write_image(folder / "e.png", (48, 40), seed=9)
    _write_mask(folder / "masks" / "a.png", masks["a"])
    _write_mask(folder / "masks" / "b.png", masks["b"], mode="P")
    _write_mask(folder / "masks" / "e.png", masks["e"], mode="RGB")
    index = write_csv(tmp_path / "index.csv", HEADER, [
        ["a.png", "cat", "A", "masks/a.png"], ["b.png", "dog", "A", "masks/b.png"], ["c.png", "cat", "B", ""],
        ["d.png", "dog", "B", ""], ["e.png", "cat", "A", "masks/e.png"],
    ])
    return folder, index, masks


def _model_32():
    """A model that resizes every image exactly to 32x32 (what the loader reads of a model)."""
    from types import SimpleNamespace

    from audit.models.preprocess import InputSpec

    return SimpleNamespace(labels=["dog", "cat"], input_spec=InputSpec(channels=3, height=32, width=32))


def test_masks_are_stored_with_their_samples_and_scaled_with_their_images(audit_home, masked_folder):
    from audit.datasets.prepare import scale_box
    from audit.services.core.datasets import dataset_summary, list_datasets

    folder, index, masks = masked_folder
    out = import_image_dataset("masked", folder, index, group_columns=["site"], mask_column="mask")
    assert out["regions"] is True and out["size"] == [3, 32, 32]
    s = load_image_samples("masked", model=_model_32())
    assert [r is None for r in s.regions] == [False, False, True, True, False]
    np.testing.assert_array_equal(s.regions[0], masks["a"])
    # a palette image: the region is where the colour is not black, whatever the palette index
    np.testing.assert_array_equal(s.regions[1], masks["b"])
    # e.png (48x40) keeps its size; the model's exact 32x32 resize moves its rectangle [12, 8, 30, 20], which
    # grows outwards exactly as a box would
    x0, y0, x1, y1 = scale_box([12, 8, 30, 20], (48, 40), (32, 32))
    expected = np.zeros((32, 32), dtype=bool)
    expected[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(s.regions[4], expected)
    assert list_datasets()[0]["regions"] is True
    assert dataset_summary("masked")["region_masks"] == 3


def test_the_same_masks_under_another_name_share_the_content_hash_and_a_changed_mask_does_not(
        audit_home, masked_folder, tmp_path):
    folder, index, masks = masked_folder
    first = import_image_dataset("m1", folder, index, mask_column="mask")
    second = import_image_dataset("m2", folder, index, mask_column="mask")
    assert first["sha256"] == second["sha256"]
    other = masks["a"].copy()
    other[0, 0] = True
    _write_mask(folder / "masks" / "a.png", other)
    third = import_image_dataset("m3", folder, index, mask_column="mask")
    assert third["sha256"] != first["sha256"]
    plain = import_image_dataset("m4", folder, index)
    assert plain["sha256"] != first["sha256"] and plain["regions"] is False


def _nothing_stored(stored_counts, run, *fragments: str) -> None:
    before = stored_counts()
    with pytest.raises(DatasetValidationError) as info:
        run()
    for f in fragments:
        assert f in str(info.value), str(info.value)
    assert stored_counts() == before


def test_a_missing_unreadable_wrongly_sized_or_empty_mask_is_named_with_its_row(audit_home, tmp_path,
                                                                                   stored_counts):
    folder = tmp_path / "imgs"
    for n in "abcdef":
        write_image(folder / f"{n}.png", (32, 32), seed=ord(n))
    _write_mask(folder / "small.png", np.ones((30, 32), dtype=bool))
    _write_mask(folder / "blank.png", np.zeros((32, 32), dtype=bool))
    (folder / "junk.png").write_bytes(b"not a png")
    _write_mask(folder / "ok.png", _l_shape(32, 32))
    index = write_csv(tmp_path / "index.csv", ["path", "label", "mask", "x0", "y0", "x1", "y1"], [
        ["a.png", "x", "nowhere.png", "", "", "", ""],
        ["b.png", "x", "junk.png", "", "", "", ""],
        ["c.png", "x", "small.png", "", "", "", ""],
        ["d.png", "x", "blank.png", "", "", "", ""],
        ["e.png", "x", "ok.png", 0, 0, 4, 4],
        ["f.png", "x", "../escape.png", "", "", "", ""],
    ])
    _nothing_stored(stored_counts, lambda: import_image_dataset(
        "bad", folder, index, mask_column="mask", region_columns=["x0", "y0", "x1", "y1"]),
        "index.csv row 2: mask file 'nowhere.png' is missing from imgs",
        "index.csv row 3: mask junk.png is not an image in an accepted format (PNG, JPEG, BMP, GIF, TIFF or WebP)",
        "index.csv row 4: mask small.png is 32x30 pixels but its image is 32x32",
        "index.csv row 5: mask blank.png has no nonzero pixel",
        "index.csv row 6: declares both a region box and a mask",
        "index.csv row 7: mask path '../escape.png' escapes the image folder")


def test_a_mask_column_missing_from_the_index_is_named(audit_home, masked_folder, stored_counts):
    folder, index, _ = masked_folder
    _nothing_stored(stored_counts, lambda: import_image_dataset("bad", folder, index, mask_column="segmentation"),
                    "missing column(s) segmentation")


def test_cli_mask_column(audit_home, masked_folder, capsys):
    from audit.cli import main

    folder, index, masks = masked_folder
    assert main(["dataset", "add", "--name", "cli-masks", "--images", str(folder), "--index", str(index),
                 "--group-columns", "site", "--mask-column", "mask"]) == 0
    assert "regions yes" in capsys.readouterr().out
    assert main(["dataset", "show", "cli-masks"]) == 0
    assert "regions: yes (3 as masks)" in capsys.readouterr().out
    assert main(["dataset", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["regions"] is True
    np.testing.assert_array_equal(load_image_samples("cli-masks", model=_model_32()).regions[0], masks["a"])
    assert main(["dataset", "add", "--name", "t", "--texts", str(index), "--mask-column", "mask"]) != 0
    assert "apply to --images only" in capsys.readouterr().err


def test_a_mask_scores_localisation_and_disparity_on_its_own_pixels():
    """Known answers: a map that is 1 on the L-shaped mask's pixels and 0 elsewhere puts all its mass inside
    the mask, while the mask's bounding box would count the 0-valued corner too; a map whose maximum lies in
    the bounding box but outside the L misses the pointing game for the mask, not for the box."""
    from audit.fairness import explanation_disparity, region_masks
    from audit.quality import localisation

    mask = _l_shape(32, 32)
    inside = torch.from_numpy(mask).double()
    noise = torch.full((32, 32), 0.01, dtype=torch.float64)
    m = (inside + noise).unsqueeze(0)
    masks = region_masks([mask], image_size=(32, 32))
    res = localisation(m, masks)
    want = float((m[0][masks[0]]).sum() / m[0].sum())
    assert res.relevance_mass[0].item() == pytest.approx(want)
    assert want > 0.9
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    peak = m.clone()
    peak[0, 6, 20] = 5.0  # inside the bounding box, outside the L
    assert localisation(peak, masks).pointing_game[0].item() == 0.0
    assert localisation(peak, [box]).pointing_game[0].item() == 1.0
    # the nearest L pixel to (6, 20) is (6, 5): 15 px away; the tolerance reaches it at 15
    assert localisation(peak, masks, tolerance=14.9).pointing_game[0].item() == 0.0
    assert localisation(peak, masks, tolerance=15.0).pointing_game[0].item() == 1.0
    # explanation disparity scores the same pixels
    d = explanation_disparity(m, masks, ["a"], n_boot=0, min_group_size=1)
    assert d.per_sample[0] == pytest.approx(want)
    assert d.baseline == pytest.approx(mask.mean())


def test_scaled_masks_follow_the_box_rule():
    """A box and the same box given as a mask scale to the same pixels at any map size (one code path), and
    a single pixel at 2x becomes a 2x2 block."""
    from audit.fairness import region_masks
    from audit.regions import box_mask

    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(4, 40, 2))
        x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
        box = [x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))]
        for size in [(h, w), (2 * h, 3 * w), (max(1, h // 2), max(1, w // 3)), (h + 5, w + 7)]:
            a = region_masks([box], image_size=(h, w), map_size=size)
            b = region_masks([box_mask(box, h, w)], image_size=(h, w), map_size=size)
            assert torch.equal(a, b), (box, (h, w), size)
    one = np.zeros((4, 4), dtype=bool)
    one[1, 2] = True
    up = region_masks([one], image_size=(4, 4), map_size=(8, 8))[0]
    assert up.nonzero().tolist() == [[2, 4], [2, 5], [3, 4], [3, 5]]
