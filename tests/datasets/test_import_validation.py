"""Imports that must fail: every problem is named with its row, file or zip entry, and nothing is stored
(no dataset row, no sample rows, no audit-log entry, no artifact)."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from audit.datasets import ImportLimits
from audit.services.core.datasets import (
    DatasetError,
    DatasetValidationError,
    import_concept_set,
    import_image_dataset,
    import_text_dataset,
)
from tests.datasets.conftest import write_csv, write_image

REGIONS = ["x0", "y0", "x1", "y1"]


def _artifacts(home: Path) -> list[Path]:
    root = home / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _expect_nothing_stored(audit_home, stored_counts, run: Callable[[], object], *fragments: str) -> str:
    before, files_before = stored_counts(), _artifacts(audit_home)
    with pytest.raises(DatasetValidationError) as info:
        run()
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert stored_counts() == before
    assert _artifacts(audit_home) == files_before
    return message


def _folder(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "imgs"
    for i in range(n):
        write_image(folder / f"{i}.png", (16, 16), seed=i)
    return folder


def _index(tmp_path: Path, rows: list[list[object]], header=("path", "label")) -> Path:
    return write_csv(tmp_path / "index.csv", list(header), rows)


def _zip(tmp_path: Path, entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "imgs.zip"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _png(tmp_path: Path, seed: int = 0) -> bytes:
    return write_image(tmp_path / f"src{seed}.png", (16, 16), seed=seed).read_bytes()


# ------------------------------------------------------------------ files named by the index

def test_missing_image_files_are_named_with_their_rows(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"], ["gone.png", "b"], ["1.png", "a"], ["also-gone.png", "b"]])
    msg = _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                                 "index.csv row 3: image file 'gone.png' is missing",
                                 "index.csv row 5: image file 'also-gone.png' is missing")
    assert len(msg.splitlines()) == 2


def test_a_truncated_image_is_named(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    data = (folder / "1.png").read_bytes()
    (folder / "1.png").write_bytes(data[: len(data) // 2])
    index = _index(tmp_path, [["0.png", "a"], ["1.png", "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "index.csv row 3: 1.png is corrupt or truncated")


def test_a_file_that_is_not_an_image_is_named(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    (folder / "notes.png").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")
    index = _index(tmp_path, [["0.png", "a"], ["notes.png", "b"], ["empty.png", "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "index.csv row 3: notes.png is not an image", "index.csv row 4: empty.png is empty")


def test_a_path_that_climbs_out_of_the_folder_is_refused(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    write_image(tmp_path / "outside.png", (16, 16), seed=9)
    index = _index(tmp_path, [["0.png", "a"], ["../outside.png", "b"], [str(tmp_path / "outside.png"), "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "row 3: path '../outside.png' escapes the image folder", "row 4: path")


def test_a_symlink_in_the_folder_is_refused(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    write_image(tmp_path / "outside.png", (16, 16), seed=9)
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "link.png: is a symbolic link")


def test_duplicate_paths_name_both_rows(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"], ["1.png", "a"], ["./0.png", "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "index.csv row 4: image file './0.png' is already listed at index.csv row 2")


# ------------------------------------------------------------------ labels and regions

def test_unknown_labels_of_the_family_are_named(audit_home, stored_counts, register_small_cnn, tmp_path):
    register_small_cnn()  # labels "0".."9"
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "3"], ["1.png", "cat"], ["2.png", "10"]])
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, index, family="tiny"),
                           "index.csv row 3: unknown label 'cat'", "index.csv row 4: unknown label '10'")


def test_an_empty_label_is_named(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"], ["1.png", ""]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "index.csv row 3: has no label in column 'label'")


@pytest.mark.parametrize("box, fragment", [
    ([0, 0, 17, 8], "lies outside the 16x16 image"),
    ([-1, 0, 8, 8], "lies outside the 16x16 image"),
    ([8, 0, 8, 8], "is empty: x1 must exceed x0"),
    ([9, 0, 4, 8], "is empty: x1 must exceed x0"),
    ([0, 5, 8, 5], "is empty"),
    ([0, 0, 8, ""], "must be four integer pixel coordinates"),
    ([0, 0, 8, 7.5], "must be four integer pixel coordinates"),
])
def test_bad_regions_are_named_with_their_rows(audit_home, stored_counts, tmp_path, box, fragment):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a", 0, 0, 8, 8], ["1.png", "b", *box]], header=("path", "label", *REGIONS))
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, index, region_columns=REGIONS),
                           "index.csv row 3: region", fragment)


# ------------------------------------------------------------------ the index file itself

def test_an_empty_index_is_refused(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    (tmp_path / "index.csv").write_text("")
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, tmp_path / "index.csv"), "index.csv: is empty")
    (tmp_path / "index.csv").write_text("path,label\n\n")
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, tmp_path / "index.csv"),
                           "index.csv: has a header but no data rows")


def test_missing_columns_are_named(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, index, group_columns=["site"],
                                                        region_columns=REGIONS),
                           "index.csv row 1: missing column(s) site, x0, y0, x1, y1")


def test_ragged_rows_are_named(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    (tmp_path / "index.csv").write_text("path,label\n0.png,a\n1.png,b,extra\n2.png\n")
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, tmp_path / "index.csv"),
                           "index.csv row 3: has 3 fields; the header has 2",
                           "index.csv row 4: has 1 fields; the header has 2")


def test_an_index_that_is_not_utf8_is_named_with_its_line(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    (tmp_path / "index.csv").write_bytes("path,label\n0.png,a\n1.png,caf\u00e9\n".encode("latin-1"))
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", folder, tmp_path / "index.csv"),
                           "index.csv line 3: is not valid UTF-8")


# ------------------------------------------------------------------ texts

def test_texts_that_are_not_utf8_are_named(audit_home, stored_counts, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"text": "fine", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_text_dataset("t", path),
                           "t.jsonl line 2: is not valid UTF-8")


def test_bad_jsonl_lines_are_named(audit_home, stored_counts, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": "oops"\n["a list"]\n{"label": "b"}\n'
                    '{"text": "", "label": "b"}\n', encoding="utf-8")
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_text_dataset("t", path),
                           "t.jsonl line 2: is not valid JSON", "t.jsonl line 3: is not a JSON object",
                           "t.jsonl line 4: has no key(s) text")
    path.write_text('{"text": "fine", "label": "a"}\n{"text": " ", "label": "b"}\n', encoding="utf-8")
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_text_dataset("t", path),
                           "t.jsonl line 2: has no text in column 'text'")


def test_unknown_text_labels_of_the_family_are_named(audit_home, stored_counts, tiny_text, tmp_path):
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [["a", "approve"], ["b", "maybe"], ["c", 1]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_text_dataset("t", path, family="tiny-text"),
                           "t.csv row 3: unknown label 'maybe'")


# ------------------------------------------------------------------ archives

@pytest.mark.parametrize("entry", ["../evil.png", "/etc/evil.png", "imgs/../../evil.png", "C:/evil.png"])
def test_zip_entries_that_escape_the_folder_are_refused(audit_home, stored_counts, tmp_path, entry):
    archive = _zip(tmp_path, {"0.png": _png(tmp_path), entry: _png(tmp_path, 1)})
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", archive, index),
                           f"imgs.zip entry {entry!r}: escapes the archive's folder")


def test_a_symlink_entry_in_a_zip_is_refused(audit_home, stored_counts, tmp_path):
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("0.png", _png(tmp_path))
        link = zipfile.ZipInfo("link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", archive, index),
                           "imgs.zip entry 'link.png': is a symbolic link")


def test_a_zip_bomb_entry_is_refused_by_its_compression_ratio(audit_home, stored_counts, tmp_path):
    archive = _zip(tmp_path, {"0.png": _png(tmp_path), "bomb.png": b"\0" * (4 << 20)})
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", archive, index),
                           "imgs.zip entry 'bomb.png': expands", "zip bomb")


def test_a_zip_that_expands_past_the_total_cap_is_refused(audit_home, stored_counts, tmp_path):
    entries = {f"{i}.png": _png(tmp_path, i) for i in range(4)}
    archive = _zip(tmp_path, entries, compression=zipfile.ZIP_STORED)
    index = _index(tmp_path, [["0.png", "a"]])
    total = sum(len(v) for v in entries.values())
    limits = ImportLimits(max_total_bytes=total - 1)
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", archive, index, limits=limits),
                           f"imgs.zip: expands to {total} bytes; the cap is {total - 1}")


def test_an_entry_larger_than_it_declares_is_cut_at_the_file_cap(audit_home, stored_counts, tmp_path):
    big = write_image(tmp_path / "big.png", (200, 200), seed=3).read_bytes()
    archive = _zip(tmp_path, {"0.png": big})
    index = _index(tmp_path, [["0.png", "a"]])
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("x", archive, index,
                                                        limits=ImportLimits(max_file_bytes=len(big) - 1)),
                           "index.csv row 2: 0.png is larger than")


@pytest.mark.parametrize("as_zip", [False, True])
def test_too_many_files_are_refused(audit_home, stored_counts, tmp_path, as_zip):
    folder = _folder(tmp_path, n=4)
    source = folder
    if as_zip:
        source = _zip(tmp_path, {p.name: p.read_bytes() for p in sorted(folder.iterdir())})
    limits = ImportLimits(max_files=3)
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_concept_set("c", source, limits=limits),
                           f"{source.name}: holds", "the cap")


def test_a_concept_folder_with_a_non_image_names_the_file(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    (folder / "readme.txt").write_text("hello")
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_concept_set("c", folder),
                           "file readme.txt: readme.txt is not an image")


# ------------------------------------------------------------------ names and the command line

def test_a_taken_name_is_refused_before_anything_is_read(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"]])
    import_image_dataset("x", folder, index)
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                           "dataset 'x' already exists")
    text = write_csv(tmp_path / "t.csv", ["text", "label"], [["a", "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_text_dataset("x", text),
                           "dataset 'x' already exists")


def test_more_than_ten_problems_are_listed_ten_at_a_time(audit_home, stored_counts, tmp_path):
    folder = _folder(tmp_path)
    index = _index(tmp_path, [[f"missing-{i}.png", "a"] for i in range(14)])
    msg = _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("x", folder, index),
                                 "row 2:", "row 11:", "... and 4 more")
    assert "row 12:" not in msg and len(msg.splitlines()) == 11


def test_the_command_line_prints_one_line_and_exits_non_zero(audit_home, stored_counts, tmp_path, capsys):
    from audit.cli import main

    folder = _folder(tmp_path)
    index = _index(tmp_path, [["0.png", "a"], ["gone.png", "b"], ["0.png", "c"]])
    before = stored_counts()
    rc = main(["dataset", "add", "--name", "x", "--images", str(folder), "--index", str(index)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and stored_counts() == before
    assert len(err.splitlines()) == 1
    assert err.startswith("error: 2 problem(s), nothing stored:")
    assert "index.csv row 3: image file 'gone.png' is missing" in err and "index.csv row 4:" in err
    assert main(["dataset", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["dataset", "add", "--name", "x", "--images", str(folder)]) != 0
    assert "--index" in capsys.readouterr().err
