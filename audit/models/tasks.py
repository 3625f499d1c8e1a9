"""The tasks a registered model can have, and what each one's model takes as input (images or texts).

Kept free of torch so that report sections and pages' helpers can ask without loading the model stack."""

from __future__ import annotations

from typing import Literal

Task = Literal["image-classification", "text-classification"]
TASKS: tuple[str, ...] = ("image-classification", "text-classification")
InputKind = Literal["image", "text"]


def input_kind(task: str | None) -> InputKind:
    """``"text"`` for a text classifier, ``"image"`` for every other task (the image side is the default)."""
    return "text" if task == "text-classification" else "image"
