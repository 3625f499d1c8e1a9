"""Imports that succeed: images of mixed formats and sizes with groups and regions, texts, concept sets."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from audit.models.preprocess import InputSpec
from audit.services.core.datasets import (
    DatasetError,
    import_image_dataset,
    import_text_dataset,
    list_datasets,
    load_image_files,
    load_image_samples,
    sample_index,
)
from tests.datasets.conftest import write_csv, write_image


def _model(labels, **spec):
    """What the loaders read of a model: its class names and input spec."""
    from types import SimpleNamespace

    return SimpleNamespace(labels=list(labels), input_spec=InputSpec(**spec))


def _import(folder: Path, index: Path, name: str = "mine", **kw):
    return import_image_dataset(name, folder, index, group_columns=["site", "sex"],
                                region_columns=["x0", "y0", "x1", "y1"], **kw)


def test_images_of_two_sizes_are_stored_with_labels_groups_and_regions(audit_home, image_folder):
    folder, index = image_folder
    out = _import(folder, index)
    # Each image keeps its own size; "size" is the most common one, and nothing was scaled down.
    assert out["samples"] == 6 and out["resized"] == 0 and out["size"] == [3, 32, 32]
    shapes = [tuple(img.shape) for img, _ in load_image_files("mine", with_regions=True)]
    assert shapes == [(3, 32, 32)] * 4 + [(3, 40, 48)] * 2
    with pytest.raises(DatasetError, match="several sizes"):
        load_image_samples("mine")  # no silent stretch to a common size

    # Prepared for a model that resizes exactly to 32x32: the stored regions move with the images.
    s = load_image_samples("mine", model=_model(["dog", "cat"], channels=3, height=32, width=32))
    assert tuple(s.images.shape) == (6, 3, 32, 32)
    assert s.label_texts == ["cat", "dog", "cat", "dog", "cat", "dog"]
    assert s.labels == [1, 0, 1, 0, 1, 0]  # the model's class indices, by name
    assert s.groups[0] == {"site": "A", "sex": "f"} and s.groups[3] == {"site": "B", "sex": "m"}
    # 32x32 boxes are kept; the 48x40 ones are scaled to 32x32 and grown to whole pixels.
    assert s.regions[:4] == [[0, 0, 8, 8], [4, 4, 32, 32], None, [10, 12, 20, 30]]
    assert s.regions[4] == [0, 0, 32, 32]
    assert s.regions[5] == [8, 8, 16, 16]
    assert s.sizes == [(32, 32)] * 4 + [(48, 40)] * 2


def test_a_stored_png_keeps_its_pixels(audit_home, image_folder):
    from PIL import Image

    folder, index = image_folder
    _import(folder, index)
    images = load_image_files("mine")
    original = torch.from_numpy(__import__("numpy").asarray(Image.open(folder / "a.png"), dtype="float32") / 255)
    assert torch.equal(images[0], original.permute(2, 0, 1))
    grey = torch.from_numpy(__import__("numpy").asarray(Image.open(folder / "b.png"), dtype="float32") / 255)
    assert torch.equal(images[1], grey.expand(3, -1, -1))  # grey stored as RGB in a colour set
    jpeg = torch.from_numpy(__import__("numpy").asarray(Image.open(folder / "e.jpg").convert("RGB"),
                                                        dtype="float32") / 255)
    assert torch.equal(images[4], jpeg.permute(2, 0, 1))  # its own 48x40 pixels, not resized


def test_dataset_list_and_show_on_the_command_line(audit_home, image_folder, capsys):
    from audit.cli import main

    folder, index = image_folder
    rc = main(["dataset", "add", "--name", "mine", "--images", str(folder), "--index", str(index),
               "--group-columns", "site,sex", "--region-columns", "x0,y0,x1,y1"])
    assert rc == 0
    capsys.readouterr()
    assert main(["dataset", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"name": "mine", "kind": "image", "samples": 6, "sha256": listed[0]["sha256"],
                       "groups": ["site", "sex"], "regions": True}]
    assert len(listed[0]["sha256"]) == 64
    assert main(["dataset", "show", "mine"]) == 0
    shown = capsys.readouterr().out
    assert "6 samples" in shown and "cat (3), dog (3)" in shown
    assert "group site: A (3), B (3)" in shown and "regions: yes" in shown


def test_integer_labels_are_class_indices_of_the_family(audit_home, register_small_cnn, tmp_path):
    register_small_cnn()  # labels "0".."9", input 1x32x32
    folder = tmp_path / "digits"
    write_image(folder / "x.png", (64, 64), seed=1)
    write_image(folder / "y.png", (16, 16), seed=2)
    index = write_csv(tmp_path / "i.csv", ["file", "digit"], [["x.png", "7"], ["y.png", 3]])
    out = import_image_dataset("digits", folder, index, path_column="file", label_column="digit", family="tiny",
                               labels_are_indices=True)
    assert out["size"][0] == 1
    assert sample_index("digits").label_texts == ["7", "3"]  # stored as the names the indices stand for
    s = load_image_samples("digits", model=_model([str(i) for i in range(10)], channels=1, height=32, width=32))
    assert s.labels == [7, 3] and s.label_names == [str(i) for i in range(10)]
    assert tuple(s.images.shape) == (2, 1, 32, 32)


def test_integer_labels_need_the_import_to_say_they_are_indices(audit_home, register_small_cnn, tmp_path):
    from audit.services.core.datasets import DatasetValidationError

    register_small_cnn(labels=["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    folder = tmp_path / "digits"
    write_image(folder / "x.png", (32, 32), seed=1)
    index = write_csv(tmp_path / "i.csv", ["file", "digit"], [["x.png", "7"]])
    with pytest.raises(DatasetValidationError, match="unknown label '7'"):
        import_image_dataset("d", folder, index, path_column="file", label_column="digit", family="tiny")
    out = import_image_dataset("d", folder, index, path_column="file", label_column="digit", family="tiny",
                               labels_are_indices=True)
    assert out["samples"] == 1 and sample_index("d").label_texts == ["seven"]


def test_a_zip_with_one_top_folder_imports_like_the_folder(audit_home, image_folder, tmp_path):
    folder, index = image_folder
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, "imgs/" + f.relative_to(folder).as_posix())
    a = _import(folder, index, "from-folder")
    b = _import(archive, index, "from-zip")
    assert a["sha256"] == b["sha256"]


def test_the_same_images_under_another_name_share_artifacts(audit_home, image_folder):
    folder, index = image_folder
    _import(folder, index, "first")
    artifacts = sorted(p.name for p in (audit_home / "artifacts").rglob("*") if p.is_file())
    _import(folder, index, "second")
    assert sorted(p.name for p in (audit_home / "artifacts").rglob("*") if p.is_file()) == artifacts
    assert sample_index("first").hashes == sample_index("second").hashes
    assert len(set(sample_index("first").hashes)) == 6


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_texts_from_csv_and_jsonl(audit_home, tmp_path, fmt):
    rows = [("she has a stable income", "approve", "female"), ("he missed payments", "decline", "male"),
            ("naïve café owner, ünïcode", "approve", "male")]
    if fmt == "csv":
        path = write_csv(tmp_path / "t.csv", ["text", "label", "gender"], [list(r) for r in rows])
    else:
        path = tmp_path / "t.jsonl"
        path.write_text("\n".join(json.dumps({"text": t, "label": y, "gender": g}) for t, y, g in rows) + "\n\n",
                        encoding="utf-8")
    out = import_text_dataset("notes", path, group_columns=["gender"])
    assert out["samples"] == 3
    from audit.services.core.datasets import load_text_samples

    s = load_text_samples("notes")
    assert s.texts == [r[0] for r in rows]
    assert s.label_names == ["approve", "decline"] and s.labels == [0, 1, 0]
    assert [g["gender"] for g in s.groups] == ["female", "male", "male"]
    listed = {d["name"]: d for d in list_datasets()}
    assert listed["notes"]["kind"] == "text" and listed["notes"]["groups"] == ["gender"]
    assert listed["notes"]["regions"] is False


def test_text_command_line(audit_home, tmp_path, capsys):
    from audit.cli import main

    path = tmp_path / "t.jsonl"
    path.write_text('{"body": "a b", "y": "x", "g": 1}\n{"body": "c d", "y": "z", "g": 2}\n', encoding="utf-8")
    assert main(["dataset", "add", "--name", "t", "--texts", str(path), "--text-column", "body",
                 "--label-column", "y", "--group-columns", "g"]) == 0
    capsys.readouterr()
    main(["dataset", "show", "t"])
    shown = capsys.readouterr().out
    assert "x (1), z (1)" in shown and "group g: 1 (1), 2 (1)" in shown and "regions: no" in shown


def test_a_concept_set_is_every_image_and_tcav_accepts_it(audit_home, tmp_path, capsys):
    from audit.cli import main
    from audit.services.analyses.concepts.service import concept_hashes, stored_concept_images

    folder = tmp_path / "stripes"
    for i in range(5):
        write_image(folder / f"s{i}.{'png' if i % 2 else 'jpg'}", (20, 20) if i else (24, 24), seed=i, mode="L")
    (folder / ".DS_Store").write_bytes(b"\0\1junk")  # desktop litter is skipped, not an error
    assert main(["concept", "add", "--name", "my-stripes", "--images", str(folder)]) == 0
    assert "tcav --concepts my-stripes" in capsys.readouterr().out
    model = _model(["a", "b"], channels=1, height=20, width=20)
    assert tuple(stored_concept_images("my-stripes", model=model).shape) == (5, 1, 20, 20)
    assert set(concept_hashes(["my-stripes", "watermark"])) == {"my-stripes"}
    s = load_image_samples("my-stripes", model=model)
    assert s.labels == [None] * 5 and s.label_texts == [None] * 5


def test_a_concept_set_is_not_picked_as_a_reference_set(audit_home, image_folder, tmp_path):
    from audit.services.core.datasets import import_concept_set, pick_reference_set

    folder, index = image_folder
    import_concept_set("aaa-concept", folder)
    _import(folder, index, "zzz-reference")
    assert pick_reference_set(None, "image-classification", ["0", "1"])["name"] == "zzz-reference"
