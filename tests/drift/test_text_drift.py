"""Drift of token attributions for a text family (tiny BERT): same weights agree, other weights drift."""

from __future__ import annotations

import pytest

from audit.services.analyses.drift.service import compute_drift
from audit.services.analyses.drift.views import drift_gallery


def test_text_drift_same_and_different_weights(tiny_text_family):
    same = compute_drift("notes", "1", "2", methods=["grad_x_input", "integrated_gradients"],
                         options={"ig_steps": 8})
    assert same["flagged"] is False and same["task"] == "text-classification" and same["samples"] == 8
    for d in same["methods"].values():
        assert d["rank_correlation"]["mean"] == pytest.approx(1.0) and d["ssim"]["mean"] is None
    other = compute_drift("notes", "2", "3", methods=["grad_x_input"], options={"ig_steps": 8})
    assert other["flagged"] is True and other["methods"]["grad_x_input"]["rank_correlation"]["mean"] < 0.7
    items = drift_gallery(other["result_id"], method="grad_x_input", n=2)
    assert len(items) == 2 and items[0].tokens[0] == "[CLS]"
    assert len(items[0].tokens) == len(items[0].base_scores) == len(items[0].new_scores)
