"""The preview that the Datasets page shows before an import, and the page itself on stored sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from audit.services.core.datasets import (DatasetValidationError, import_image_dataset, list_datasets,
                                     preview_image_import)
from tests.datasets.conftest import write_csv

ROOT = Path(__file__).resolve().parents[2]
OPTS = dict(group_columns=["site", "sex"], region_columns=["x0", "y0", "x1", "y1"])


def test_preview_validates_like_the_import_and_stores_nothing(audit_home, image_folder, stored_counts):
    folder, index = image_folder
    before = stored_counts()
    pv = preview_image_import("mine", folder, index, **OPTS)
    assert stored_counts() == before
    assert pv["samples"] == 6 and pv["label_counts"] == {"cat": 3, "dog": 3} and pv["unlabelled"] == 0
    assert pv["groups"] == ["sex", "site"] and pv["regions"] and pv["resized"] == 0
    assert pv["size"] == [3, 32, 32]  # the most common size
    first = pv["preview"][0]
    assert first["label"] == "cat" and first["groups"] == {"site": "A", "sex": "f"} and first["region"] == [0, 0, 8, 8]
    assert first["image"].shape == (32, 32, 3)
    stored = import_image_dataset("mine", folder, index, **OPTS)
    assert stored["samples"] == pv["samples"]


def test_preview_reports_the_same_problems_as_the_import(audit_home, image_folder, tmp_path, stored_counts):
    folder, _ = image_folder
    bad = write_csv(tmp_path / "bad.csv", ["path", "label"], [["a.png", "cat"], ["missing.png", "dog"]])
    before = stored_counts()
    with pytest.raises(DatasetValidationError) as pv:
        preview_image_import("mine", folder, bad)
    with pytest.raises(DatasetValidationError) as imp:
        import_image_dataset("mine", folder, bad)
    assert pv.value.problems == imp.value.problems and "missing.png" in pv.value.problems[0]
    assert stored_counts() == before


def test_datasets_page_lists_stored_sets_with_their_groups_and_regions(audit_home, image_folder):
    folder, index = image_folder
    import_image_dataset("mine", folder, index, **OPTS)
    at = AppTest.from_file(str(ROOT / "pages" / "datasets.py"), default_timeout=120)
    at.session_state["principal"] = Principal("admin", "admin")
    at.run()
    assert not at.exception
    (row,) = at.dataframe[0].value.to_dict("records")
    stored = list_datasets()[0]
    assert row["name"] == "mine" and row["samples"] == 6 and row["regions"] == "yes"
    assert row["groups"] == ", ".join(stored["groups"])
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    assert [t.label for t in at.tabs] == ["Reference images", "Texts", "Concept set"]


def test_viewers_see_the_sets_but_no_import(audit_home, image_folder):
    folder, index = image_folder
    import_image_dataset("mine", folder, index, **OPTS)
    at = AppTest.from_file(str(ROOT / "pages" / "datasets.py"), default_timeout=120)
    at.session_state["principal"] = Principal("v", "viewer")
    at.run()
    assert not at.exception and not at.tabs
    assert any("administrator" in c.value for c in at.caption)
