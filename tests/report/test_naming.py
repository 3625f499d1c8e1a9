"""Method names as people say them, and each paper cited once."""

from __future__ import annotations

import pytest

from audit.attribution.registry import registered
from audit.report.naming import method_label, method_labels, references
from audit.report.sections import appendix_section
from audit.text.methods import TEXT_METHOD_SPECS


@pytest.mark.parametrize("name", sorted(registered()))
def test_every_image_method_has_a_label_and_a_paper(name):
    cls = registered()[name]
    assert method_label(name) == cls.label != name
    assert cls.paper and "(" in cls.paper and cls.paper.rstrip().endswith("."), cls.paper


def test_labels_of_the_report_methods_and_unknown_identifiers():
    assert method_labels(["integrated_gradients", "gradcam", "gradcam_pp", "saliency", "smoothgrad"]) == [
        "Integrated Gradients", "Grad-CAM", "Grad-CAM++", "Saliency", "SmoothGrad"]
    assert method_label("not_a_method") == "not_a_method"
    assert method_label("attention_flow") == TEXT_METHOD_SPECS["attention_flow"].label


def test_each_paper_is_listed_once_with_every_method_that_uses_it():
    refs = references(["integrated_gradients", "gradcam", "integrated_gradients", "attention_rollout",
                       "attention_flow", "tcav", "attention"])
    papers = [p for _, p in refs]
    assert len(papers) == len(set(papers)) == 4
    assert refs[0] == ("Integrated Gradients", registered()["integrated_gradients"].paper)
    assert ("Attention rollout, Attention flow", TEXT_METHOD_SPECS["attention_rollout"].paper) in refs
    assert refs[-1][0] == "TCAV"  # the analysis by its name; "attention" has no paper of its own


def test_appendix_prints_the_references_table():
    sec = appendix_section([], {}, {}, cited=["saliency", "saliency", "sanity"])
    tables = [b for b in sec.blocks if getattr(b, "columns", None) == ["Method or analysis", "Reference"]]
    assert len(tables) == 1
    assert [r[0] for r in tables[0].rows] == ["Saliency", "Sanity checks (model randomisation)"]
    bare = appendix_section([], {}, {})
    assert not [b for b in bare.blocks if getattr(b, "columns", None) == ["Method or analysis", "Reference"]]
