"""Leave-one-out occlusion (Zeiler & Fergus 2014, for text): the change of the explained output when one
token, or one whole word, is removed or replaced. Word scores are the method's own (whole words left out)."""

from __future__ import annotations

from audit.declarations import Evaluations, Option, one_of
from audit.text.base import TextAttributionMethod, TextBatch, TextGeometry, TextScores
from audit.text.occlusion import REPLACEMENTS, leave_one_out
from audit.text.options import OUTPUT, TextOptions

OCCLUSION_REPLACEMENT = Option("occlusion_replacement", "remove", "'remove' deletes the token or word; 'mask' "
                               "and 'pad' overwrite it with [MASK] or [PAD]", check=one_of(*REPLACEMENTS),
                               label="replacement")


class Occlusion(TextAttributionMethod):
    name = "occlusion"
    label = "Occlusion (leave one out)"
    summary = "change of the output when a token or word is removed or replaced"
    paper = "Zeiler & Fergus (2014). Visualizing and Understanding Convolutional Networks. ECCV."
    listing = 60
    default = True
    preselected = True
    options = (OCCLUSION_REPLACEMENT, OUTPUT)

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        # one variant per token and one per word of each text
        return Evaluations(forward=geometry.texts * (geometry.tokens + geometry.words), backward=0)

    def run(self, batch: TextBatch) -> TextScores:
        o = batch.options
        occ = leave_one_out(
            batch.model, batch.encoded, batch.targets, batch.explained(), replacement=o.occlusion_replacement,
            pad_id=batch.pad_id, mask_id=batch.mask_id, batch_size=o.batch_size * 4, output=o.output,
            device=batch.device,
        )
        return TextScores(tokens=occ.tokens, words=occ.words)
