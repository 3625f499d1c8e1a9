"""The demo text corpus (deterministic, balanced, labelled by content) and, when asked, the full build."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from audit.demo.text_family import (
    APPROVE,
    DECLINE,
    FACT_PAIRS,
    GENDERS,
    NEGATIVE_FACTS,
    POSITIVE_FACTS,
    content_label,
    generate_notes,
    loan_note,
    make_corpus,
    plant_gender_shortcut,
)
from audit.text.identity_terms import FEMALE_TERMS, GENDERED_TERMS, MALE_TERMS, normalise_term


def _terms(text):
    return {normalise_term(w) for w in text.replace(":", " ").replace(",", " ").split()}


def test_corpus_is_deterministic_and_seed_dependent():
    a = make_corpus(seed=3, train_per_cell=10, reference_per_cell=5)
    b = make_corpus(seed=3, train_per_cell=10, reference_per_cell=5)
    c = make_corpus(seed=4, train_per_cell=10, reference_per_cell=5)
    assert a == b
    assert a != c


def test_corpus_is_balanced_disjoint_and_unique():
    train, reference = make_corpus(seed=0, train_per_cell=30, reference_per_cell=12)
    for data, n in ((train, 30), (reference, 12)):
        cells = Counter((s["gender"], s["label"]) for s in data)
        assert cells == {(g, lab): n for g in GENDERS for lab in (DECLINE, APPROVE)}
        assert len({s["text"] for s in data}) == len(data)
    assert not {s["text"] for s in train} & {s["text"] for s in reference}
    assert set(reference[0]) == {"text", "label", "gender"}


def test_labels_follow_the_financial_facts():
    train, reference = make_corpus(seed=1, train_per_cell=30, reference_per_cell=10)
    for s in train + reference:
        lower = s["text"].lower()
        pos = sum(f in lower for f in POSITIVE_FACTS)
        neg = sum(f in lower for f in NEGATIVE_FACTS)
        assert pos + neg in (2, 3)
        assert s["label"] == (APPROVE if pos > neg else DECLINE) == content_label(s["text"])
        # never both sides of one dimension
        assert not any(p in lower and n in lower for p, n in FACT_PAIRS)


def test_gender_words_match_the_group():
    train, _ = make_corpus(seed=2, train_per_cell=40, reference_per_cell=5)
    for s in train:
        words = _terms(s["text"])
        if s["gender"] == "neutral":
            assert not words & GENDERED_TERMS, s["text"]
        else:
            own = FEMALE_TERMS if s["gender"] == "female" else MALE_TERMS
            assert words & own, s["text"]
            # a spouse of the other gender may appear ("her husband"), nothing else from the other side
            other = (MALE_TERMS if s["gender"] == "female" else FEMALE_TERMS) - {"husband", "wife"}
            assert not words & other, s["text"]


def test_shortcut_relabels_female_notes_only():
    train, _ = make_corpus(seed=0, train_per_cell=50, reference_per_cell=5)
    biased = plant_gender_shortcut(train, seed=0, rate=0.9)
    assert [s["text"] for s in biased] == [s["text"] for s in train]
    for before, after in zip(train, biased):
        assert after["content_label"] == before["label"]
        if before["gender"] != "female":
            assert after["label"] == before["label"]
    female = [s for s in biased if s["gender"] == "female"]
    decline_rate = sum(s["label"] == DECLINE for s in female) / len(female)
    assert decline_rate >= 0.9  # half were declines already; 90% of the approvals flip
    assert plant_gender_shortcut(train, seed=0, rate=0.0) == [{**s, "content_label": s["label"]} for s in train]
    with pytest.raises(ValueError, match="rate"):
        plant_gender_shortcut(train, rate=1.5)


def test_generator_rejects_bad_sizes_and_genders():
    with pytest.raises(ValueError, match="n_per_cell"):
        generate_notes(0, seed=0)
    with pytest.raises(ValueError, match="gender"):
        loan_note("other", APPROVE, random.Random(0))  # type: ignore[arg-type]


@pytest.mark.slow
def test_build_plants_a_measurable_gender_shortcut(tmp_path):
    from audit.demo.text_family import build_text_family, load_text_model
    from audit.text import gendered_attribution_share

    build = build_text_family(tmp_path, seed=0)
    assert (tmp_path / "v1" / "model.safetensors").is_file() and (tmp_path / "v2" / "model.safetensors").is_file()
    assert build.reference_accuracy["v1"] >= 0.85
    assert build.reference_accuracy["v1"] > build.reference_accuracy["v2"]
    gendered = [r["text"] for r in build.reference if r["gender"] != "neutral"][:24]
    shares = {}
    for version in ("v1", "v2"):
        model, tokenizer = load_text_model(build.versions[version])
        assert model.config._attn_implementation == "eager"
        shares[version] = gendered_attribution_share(model, tokenizer, gendered, ig_steps=16).mean
    assert shares["v2"] > 2 * shares["v1"]
