"""Concept service: stored concept sets resampled per run, R >= 3, the pseudo-concept test over every run,
the typed result written once and read back, and its cache key."""

from __future__ import annotations

import pytest
import torch
from audit.services.analyses.concepts.service import ConceptError, concept_examples, run_concept_test, stored_concept_tests

LABELS = [str(i) for i in range(10)]
KW = dict(target=3, dataset="ref", n_random=3, set_size=6, n_inputs=8)


@pytest.fixture()
def tiny_concepts(audit_home, register_small_cnn):
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn(mean=0.5, std=0.5)
    g = torch.Generator().manual_seed(1)
    add_image_dataset("ref", torch.rand(40, 1, 32, 32, generator=g), [3 if i < 12 else i % 10 for i in range(40)],
                      [{"site": "A"} for _ in range(40)], label_names=LABELS)
    stripes = torch.zeros(20, 1, 32, 32)
    for i in range(20):
        stripes[i, :, :, (i % 4)::4] = 1.0
    add_image_dataset("my-stripes", stripes, [None] * 20, [{} for _ in range(20)], label_names=LABELS)
    return audit_home


def test_a_stored_concept_set_is_resampled_per_run(tiny_concepts):
    from audit.services.core.datasets import load_image_samples

    pool = load_image_samples("my-stripes").images
    a = concept_examples("my-stripes", n=8, seed=1, dataset="ref")
    b = concept_examples("my-stripes", n=8, seed=2, dataset="ref")
    assert torch.equal(a, concept_examples("my-stripes", n=8, seed=1, dataset="ref"))
    assert not torch.equal(a, b)
    assert not torch.equal(a, pool[:8]) or not torch.equal(b, pool[:8])  # not the first n whatever the seed
    flat = pool.reshape(len(pool), -1)
    for img in torch.cat([a, b]):  # every drawn image is one of the stored ones
        assert (flat == img.reshape(1, -1)).all(1).any()


def test_fewer_than_three_random_runs_are_refused_with_the_engines_message(tiny_concepts):
    from audit.concepts.tcav import MIN_RUNS

    with pytest.raises(ConceptError, match=f"n_random must be between {MIN_RUNS}"):
        run_concept_test("tiny", "1", concepts=["stripes"], **{**KW, "n_random": 2})


def test_unknown_concept_is_refused_before_any_work(tiny_concepts):
    with pytest.raises(ConceptError, match="unknown concept 'nope'"):
        run_concept_test("tiny", "1", concepts=["nope"], **KW)


def test_concept_test_is_typed_stored_and_reused(tiny_concepts):
    res = run_concept_test("tiny", "1", concepts=["my-stripes", "random-reference"], **KW)
    assert res.stored is not None and not res.stored.cached
    assert {(c.concept, c.layer) for c in res.cells} == {(c, l) for c in ("my-stripes", "random-reference")
                                                         for l in res.layers}
    for c in res.cells:
        assert len(c.scores) == 3 and c.score == pytest.approx(sum(c.scores) / 3)
        assert c.p_value_corrected >= c.p_value and c.cav_accuracy is not None
    again = run_concept_test("tiny", "1", concepts=["random-reference", "my-stripes"], **KW)
    assert again.stored.cached and again.stored.id == res.stored.id and again.cells == res.cells
    (only,) = stored_concept_tests("tiny", "1")
    assert only.cells == res.cells and only.concept_resampled_per_run
    # each run drew its own concept sample
    assert len(set(res.concept_hashes["my-stripes"])) == 3
    other = run_concept_test("tiny", "1", concepts=["my-stripes", "random-reference"], **{**KW, "seed": 1})
    assert other.stored.id != res.stored.id and not other.stored.cached


def test_pseudo_concept_test_uses_every_run(tiny_concepts):
    from audit.concepts.stats import pseudo_concept_test

    res = run_concept_test("tiny", "1", concepts=["my-stripes"], test="pseudo_concept", **{**KW, "n_random": 4})
    for c in res.cells:
        assert len(c.scores) == 4 and len(c.random_scores) == 4 * 3
        means = torch.tensor(c.random_scores, dtype=torch.float64).reshape(4, 3).mean(1).tolist()
        _, p = pseudo_concept_test(list(c.scores), means)
        assert c.p_value == pytest.approx(p)
        _, p_first_run_only = pseudo_concept_test(list(c.scores[:1]), means)
        if c.scores[0] != pytest.approx(sum(c.scores) / len(c.scores)):
            assert c.p_value != pytest.approx(p_first_run_only)


def test_cli_json_is_what_the_service_stored(tiny_concepts, capsys):
    import json

    from audit.cli import main
    from audit.results import ConceptTest

    assert main(["tcav", "--family", "tiny", "--version", "1", "--target", "3", "--dataset", "ref",
                 "--concepts", "my-stripes", "--n-random", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (stored,) = stored_concept_tests("tiny", "1")
    assert out["id"] == stored.stored.id
    assert ConceptTest.from_summary(out).cells == stored.cells
    assert main(["tcav", "--family", "tiny", "--version", "1", "--target", "3", "--dataset", "ref",
                 "--concepts", "my-stripes", "--n-random", "2"]) != 0
    err = capsys.readouterr().err
    assert "n_random must be between 3" in err and len(err.strip().splitlines()) == 1
