"""SHAP for text (Lundberg & Lee 2017): Owen values from the shap library's Partition explainer over its
Text masker's token hierarchy (audit.text.shap_text)."""

from __future__ import annotations

from audit.declarations import Evaluations, NumberRange, Option, positive_int
from audit.text.base import TextAttributionMethod, TextBatch, TextGeometry, TextScores
from audit.text.options import OUTPUT, TextOptions
from audit.text.shap_text import shap_values

SHAP_MAX_EVALS = Option("shap_max_evals", 100, "model evaluations per text", check=NumberRange(low=2, integer=True),
                        label="evaluations")
# The Partition explainer expands its hierarchy shap_batch_size nodes at a time until max_evals is spent,
# so the batch size changes which nodes get evaluated: a result option.
SHAP_BATCH_SIZE = Option("shap_batch_size", 16, "strings per model call (and nodes expanded together)",
                         check=positive_int, label="evaluations per batch")


class Shap(TextAttributionMethod):
    name = "shap"
    label = "SHAP (Partition)"
    summary = "Owen values over the text masker's token hierarchy, from the shap library"
    paper = "Lundberg & Lee (2017). A Unified Approach to Interpreting Model Predictions. NeurIPS."
    listing = 70
    default = True
    # The Partition explainer walks a fixed token hierarchy: no sampling, so no seed.
    options = (SHAP_MAX_EVALS, SHAP_BATCH_SIZE, OUTPUT)

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        return Evaluations(forward=geometry.texts * opts.shap_max_evals, backward=0)

    def run(self, batch: TextBatch) -> TextScores:
        o = batch.options
        return TextScores(tokens=shap_values(
            batch.model, batch.tokenizer, batch.encoded, batch.targets, max_evals=o.shap_max_evals,
            max_length=batch.max_length, pad_id=batch.pad_id, batch_size=o.shap_batch_size, output=o.output,
            device=batch.device,
        ))
