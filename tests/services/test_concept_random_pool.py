"""The random counterparts of a concept test leave out the samples the data marks as carrying the concept,
whether the flag is stored as a boolean or as the text a CSV import stores ("yes", "true", "1")."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("flag, other", [(True, False), ("yes", "no"), ("TRUE", "false"), ("1", "0")])
def test_samples_flagged_with_the_concept_are_not_random_counterparts(tiny_image, flag, other):
    from audit.services.analyses.concepts.service import run_concept_test
    from audit.services.core.datasets import add_image_dataset

    g = torch.Generator().manual_seed(2)
    flags = [flag if i % 3 == 0 else other for i in range(30)]
    add_image_dataset("flagged", torch.rand(30, 1, 32, 32, generator=g), [i % 2 for i in range(30)],
                      [{"stripes": f} for f in flags], label_names=[str(i) for i in range(10)])
    res = run_concept_test("tiny", "1", concepts=["stripes"], target=0, dataset="flagged",
                           layers=["features.block2"], n_random=3, set_size=5, n_inputs=6)
    assert res.random_pool_size == 20  # the 10 flagged samples are left out
