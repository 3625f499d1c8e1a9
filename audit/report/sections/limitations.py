"""Section "Limitations": what the evidence in this report can and cannot show."""

from __future__ import annotations

from typing import Sequence

from audit.report.content import Section
from audit.report.sections.base import ModelFacts, new_section


def limitations_section(model: ModelFacts, *, explained_samples: int, computed: Sequence[str],
                        missing: Sequence[str]) -> Section:
    """``computed``: evidence produced at report time; ``missing``: titles of sections lacking evidence."""
    sec = new_section("limitations")
    items = [
        "Post-hoc explanations approximate what the model computes; different methods can disagree, and none "
        "proves a causal mechanism. Read them together with the quality checks.",
        f"Figures and quality checks use {explained_samples} samples chosen by confidence; they illustrate and do "
        "not estimate population rates.",
        "Deletion and insertion scores depend on the replacement value (zeros, blur) and can reward maps that "
        "create out-of-distribution inputs.",
        "Concept tests depend on the concept and random example sets chosen; a non-significant result does not "
        "show that the model ignores a concept.",
        "Drift thresholds are heuristics: retraining with a different seed alone also changes explanations.",
        "Reference-set results describe this reference set only; production data may differ.",
    ]
    if model.kind == "text":
        items.append("Text model: image-only checks (heat maps, deletion/insertion, randomisation sanity check) are "
                     "not part of this report.")
    if computed:
        items.append("Computed at report time (and stored where the workbench keeps such results): "
                     + ", ".join(computed) + ".")
    for it in items:
        sec.text("- " + it)
    if missing:
        sec.text("Sections with missing evidence: " + ", ".join(missing) + ".")
    return sec
