"""Concept testing (TCAV): does a model use a human concept for a class, with significance?

Entry points: :func:`run_tcav` (one concept) and :func:`run_tcav_many` (several, corrected together);
:func:`choose_tcav_layers` picks default layers on any architecture.
"""

from audit.concepts.cav import CAV, train_cav
from audit.concepts.layers import LayerChoice, choose_tcav_layers
from audit.concepts.sets import (
    random_pool_sets,
    set_sha256,
    stripes_concept,
    texture_concept,
    watermark_concept,
)
from audit.concepts.stats import correct_pvalues, pseudo_concept_test, significance, two_sided_ttest
from audit.concepts.tcav import LayerResult, TCAVResult, TCAVRunResult, run_tcav, run_tcav_many

__all__ = [
    "CAV",
    "LayerChoice",
    "LayerResult",
    "TCAVResult",
    "TCAVRunResult",
    "choose_tcav_layers",
    "correct_pvalues",
    "pseudo_concept_test",
    "random_pool_sets",
    "run_tcav",
    "run_tcav_many",
    "set_sha256",
    "significance",
    "stripes_concept",
    "texture_concept",
    "train_cav",
    "two_sided_ttest",
    "watermark_concept",
]
