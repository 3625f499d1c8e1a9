"""The one mapping from a dataset's label names to a model's class indices: by name, never by position.

A stored dataset keeps class names; every consumer that compares labels with predictions (performance,
bias, concept-test targets, counterfactuals, drift, the full audit) goes through ``labels_for_model``."""

from __future__ import annotations

import difflib
from typing import Optional, Sequence


class LabelMismatch(ValueError):
    """Label names a model does not know; the message lists them with the model's nearest names."""


def nearest_names(name: str, model_labels: Sequence[str], n: int = 3) -> list[str]:
    """The model's class names closest to ``name`` (case-insensitive), best first."""
    lowered = {m.lower(): m for m in model_labels}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def unknown_labels_message(unknown: Sequence[str], model_labels: Sequence[str], *, what: str) -> str:
    parts = []
    for name in list(unknown)[:8]:
        near = nearest_names(name, model_labels)
        parts.append(f"{name!r}" + (f" (nearest: {', '.join(repr(n) for n in near)})" if near else ""))
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    return (f"{what} has {len(unknown)} label name(s) the model does not know: {'; '.join(parts)}{more}. "
            f"Labels are matched to the model's {len(model_labels)} class names exactly")


def labels_for_model(names: Sequence[Optional[str]], model_labels: Sequence[str], *,
                     what: str = "the dataset") -> list[Optional[int]]:
    """Per sample: the model's class index of its label name (None for an unlabelled sample).

    Raises LabelMismatch naming every unknown name and the model's nearest names."""
    index = {n: i for i, n in enumerate(model_labels)}
    unknown = sorted({n for n in names if n is not None and n not in index})
    if unknown:
        raise LabelMismatch(unknown_labels_message(unknown, model_labels, what=what))
    return [None if n is None else index[n] for n in names]


def label_map(dataset_names: Sequence[str], model_labels: Sequence[str]) -> list[Optional[int]]:
    """For each of a dataset's own label names, the model's class index (None when unknown): the part of a
    result key that says how the data's labels were read, so another class order is another key."""
    index = {n: i for i, n in enumerate(model_labels)}
    return [index.get(n) for n in dataset_names]


def classes_present(labels: Sequence[Optional[int]]) -> list[int]:
    """The model class indices that occur in the data, ascending."""
    return sorted({int(y) for y in labels if y is not None})
