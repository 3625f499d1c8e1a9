"""Counterfactual search: the smallest change to an image or a text that flips a model's decision.

Entry points: `image_counterfactual`, `image_counterfactuals`, `diverse_counterfactuals`, `text_counterfactual`.
"""

from audit.counterfactuals.image import (
    CounterfactualSet,
    ImageCounterfactual,
    SearchOptions,
    diverse_counterfactuals,
    image_counterfactual,
    image_counterfactuals,
)
from audit.counterfactuals.text import (
    Substitution,
    TextCounterfactual,
    text_counterfactual,
)

__all__ = [
    "CounterfactualSet",
    "ImageCounterfactual",
    "SearchOptions",
    "Substitution",
    "TextCounterfactual",
    "diverse_counterfactuals",
    "image_counterfactual",
    "image_counterfactuals",
    "text_counterfactual",
]
