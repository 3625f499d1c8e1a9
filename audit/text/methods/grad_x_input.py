"""Gradient x Input on the word embeddings (Shrikumar et al. 2016), summed over the embedding dimension.

Served by the batch's shared forward pass: one backward, no pass of its own (unless the model calls its
embedding layer twice).
"""

from __future__ import annotations

from audit.declarations import Evaluations
from audit.text.base import TextAttributionMethod, TextBatch, TextGeometry, TextScores
from audit.text.gradients import grad_x_input
from audit.text.options import OUTPUT, TextOptions


class GradXInput(TextAttributionMethod):
    name = "grad_x_input"
    label = "Gradient × Input"
    summary = "gradient of the output times the word embedding"
    paper = ("Shrikumar, Greenside, Shcherbina & Kundaje (2016). Not Just a Black Box: Learning Important "
             "Features Through Propagating Activation Differences. arXiv:1605.01713.")
    listing = 20
    default = True
    preselected = True
    shares_gradient = True
    options = (OUTPUT,)

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        return Evaluations(forward=0, backward=geometry.texts)

    def run(self, batch: TextBatch) -> TextScores:
        scores = batch.shared_gradient
        if scores is None:
            scores = grad_x_input(batch.model, batch.embedding, batch.padded, batch.targets,
                                  output=batch.options.output).scores
        return TextScores(tokens=batch.unpad(scores))
