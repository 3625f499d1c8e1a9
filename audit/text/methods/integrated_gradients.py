"""Integrated Gradients over the word embeddings (Sundararajan, Taly & Yan 2017, arXiv:1703.01365).

The path runs in embedding space from a baseline text ([PAD] everywhere except the special tokens, which
are kept) to the input; the scores are summed over the embedding dimension (audit.text.gradients).
"""

from __future__ import annotations

from audit.declarations import Choice, Evaluations, Option, positive_int
from audit.quadrature import IG_MAX_STEPS, IG_METHOD, IG_STEPS, IG_TOLERANCE, check_points
from audit.text.base import TextAttributionMethod, TextBatch, TextGeometry, TextScores
from audit.text.gradients import BASELINES, integrated_gradients
from audit.text.options import OUTPUT, TextOptions

IG_BASELINE = Option("ig_baseline", "pad", "the baseline text: every token but the special ones replaced by [PAD], "
                     "[MASK] or a token id; 'zero': zero word embeddings there",
                     check=Choice(BASELINES, or_integer="a token id"), label="baseline")
INTERNAL_BATCH_SIZE = Option("internal_batch_size", 256, "rows (texts x path points) of one forward pass; texts "
                             "of similar length are packed together", result=False, check=positive_int)
ERR_MAX_STEPS = "ig_max_steps must be an integer >= ig_steps ({steps}), got {max_steps!r}"


class IntegratedGradients(TextAttributionMethod):
    name = "integrated_gradients"
    label = "Integrated Gradients"
    summary = "path integral of gradients from a baseline text to the input, over the word embeddings"
    paper = "Sundararajan, Taly & Yan (2017). Axiomatic Attribution for Deep Networks. ICML."
    listing = 10
    default = True
    preselected = True
    options = (IG_BASELINE, IG_STEPS, IG_METHOD, IG_TOLERANCE, IG_MAX_STEPS, OUTPUT, INTERNAL_BATCH_SIZE)

    @classmethod
    def check_options(cls, opts: TextOptions) -> None:
        check_points(opts.ig_method, opts.ig_steps)
        if opts.ig_max_steps < opts.ig_steps:
            raise ValueError(ERR_MAX_STEPS.format(steps=opts.ig_steps, max_steps=opts.ig_max_steps))

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        # the input's and the baseline's values, and the path points (before any refinement)
        n = geometry.texts
        return Evaluations(forward=n * (opts.ig_steps + 2), backward=n * opts.ig_steps)

    def run(self, batch: TextBatch) -> TextScores:
        o = batch.options
        ig = integrated_gradients(
            batch.model, batch.embedding, batch.padded, batch.encoded, batch.targets, steps=o.ig_steps,
            method=o.ig_method, baseline=o.ig_baseline, pad_id=batch.pad_id, mask_id=batch.mask_id,
            internal_batch_size=o.internal_batch_size, output=o.output, tolerance=o.ig_tolerance,
            max_steps=o.ig_max_steps,
        )
        return TextScores(tokens=batch.unpad(ig.scores), delta=ig.delta)
