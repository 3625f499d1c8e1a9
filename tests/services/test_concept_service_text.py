"""Concept tests on text models through the service: stored text datasets as concepts, the encoder's blocks
as layers, the stored result read back by the page and the job queue; and a known answer on the demo's
loan-notes model (a concept made of the class's own notes points towards the class)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from audit.services.analyses.concepts.service import (ConceptError, concept_examples_preview, default_layers, layer_choices,
                                     run_concept_test, stored_concept_tests)
from audit.services.core.datasets import add_text_dataset

ROOT = Path(__file__).resolve().parents[2]

INCOME = ["she has a stable income .", "he has a stable income .", "mr applicant has a stable income .",
          "ms applicant has income and no debt .", "her income has no debt ."] * 2
SMALL = dict(n_random=3, set_size=6, n_inputs=10)


@pytest.fixture()
def text_concepts(tiny_text):
    # a concept set is unlabelled, as an import without a label column stores it
    add_text_dataset("income-notes", INCOME, [None] * len(INCOME), [{}] * len(INCOME), label_names=[])
    return tiny_text


def test_a_text_concept_test_runs_on_the_encoder_blocks_and_is_stored_once(text_concepts):
    assert layer_choices("tiny-text", "1") == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert default_layers("tiny-text", "1") == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    res = run_concept_test("tiny-text", "1", concepts=["income-notes", "random-reference"], target=1,
                           dataset="notes", **SMALL)
    assert [(c.concept, c.layer) for c in res.cells] == [
        ("income-notes", "bert.encoder.layer.0"), ("income-notes", "bert.encoder.layer.1"),
        ("random-reference", "bert.encoder.layer.0"), ("random-reference", "bert.encoder.layer.1")]
    assert all(len(c.scores) == 3 and all(0.0 <= s <= 1.0 for s in c.scores) for c in res.cells)
    assert res.target_label == "approve" and res.stored.dataset == "notes"
    again = run_concept_test("tiny-text", "1", concepts=["random-reference", "income-notes"], target=1,
                             dataset="notes", **SMALL)
    assert again.stored.id == res.stored.id  # the store is the cache: the concept order does not matter
    assert [t.stored.id for t in stored_concept_tests("tiny-text", "1")] == [res.stored.id]
    # the examples the page previews are texts of the concept set
    assert set(concept_examples_preview("income-notes", dataset="notes", n=4)) <= set(INCOME)


def test_image_concepts_and_unknown_names_are_refused_for_a_text_model(text_concepts):
    with pytest.raises(ConceptError, match="unknown concept 'watermark': use one of random-reference or the name "
                                           "of a stored text dataset"):
        run_concept_test("tiny-text", "1", concepts=["watermark"], target=1, dataset="notes", **SMALL)
    with pytest.raises(ConceptError, match="unknown concept 'nope'"):
        run_concept_test("tiny-text", "1", concepts=["nope"], target=1, dataset="notes", **SMALL)


def test_the_tcav_job_takes_a_text_model(text_concepts):
    from audit.services.jobs.kinds import JobError
    from audit.services.jobs.queue import job_kind

    kind = job_kind("tcav")
    checked = kind.check({"family": "tiny-text", "version": "1", "dataset": "notes", "target": "approve",
                          "concepts": ["income-notes", "random-reference"], "n_random": 3})
    assert checked["target"] == 1 and checked["dataset"] == "notes"
    with pytest.raises(JobError, match="unknown concept 'stripes'"):
        kind.check({"family": "tiny-text", "version": "1", "dataset": "notes", "target": 1, "concepts": ["stripes"]})


def test_the_concepts_page_runs_and_shows_a_text_concept_test(text_concepts):
    at = AppTest.from_file(str(ROOT / "pages" / "concepts.py"), default_timeout=300)
    at.session_state["principal"] = Principal("tester", "auditor")
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect[0].value == ["income-notes", "random-reference"]
    at.number_input[0].set_value(3)
    at.button[0].click().run()
    assert not at.exception, at.exception
    [stored] = stored_concept_tests("tiny-text", "1")
    table = next(d.value for d in at.dataframe if "TCAV score" in d.value.columns)
    assert list(table["concept"]) == [c.concept for c in stored.cells]
    assert list(table["TCAV score"]) == pytest.approx([c.score for c in stored.cells])
    assert any("income-notes" in m.value and "stable income" in m.value for m in at.markdown)


@pytest.fixture()
def demo_copy(demo_home, tmp_path, monkeypatch):
    """A copy of the demo home, so the concept sets added here do not reach other tests."""
    home = tmp_path / "demo"
    shutil.copytree(demo_home, home)
    monkeypatch.setenv("AUDIT_HOME", str(home))
    return home


def test_the_class_own_notes_point_towards_the_class_on_the_demo_model(demo_copy):
    """Known answer: a concept made of notes the content rule approves is, at the last encoder block, a
    direction that raises the 'approve' logit for (nearly) every approve input and lowers 'decline';
    the random control stays at chance."""
    from audit.demo.text_family import generate_notes
    from audit.services.core.datasets import load_text_samples

    ref = load_text_samples("loan-notes-reference")
    notes = [n["text"] for n in generate_notes(10, seed=779, exclude=set(ref.texts)) if n["label"] == 1]
    add_text_dataset("approve-notes", notes, [None] * len(notes), [{}] * len(notes), label_names=[])
    scores = {}
    for target in (1, 0):
        res = run_concept_test("loan-notes-minilm", "1", concepts=["approve-notes", "random-reference"],
                               target=target, dataset="loan-notes-reference", n_random=5, set_size=20, n_inputs=30)
        last = res.layers[-1]
        scores[target] = {c.concept: c.score for c in res.cells if c.layer == last}
        assert not any(c.significant for c in res.cells if c.concept == "random-reference")
    assert scores[1]["approve-notes"] >= 0.9 and scores[0]["approve-notes"] <= 0.1, scores
