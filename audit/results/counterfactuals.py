"""Counterfactual results: the stored reference-set search (kind ``counterfactual``), read back by the
page, the CLI and the report; and the single-sample search shown side by side (not stored).

Validity in both is judged on the image as it is shown: each channel in its own pixel range, 8-bit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from audit.jsonsafe import finite_or_none, json_safe
from audit.results.base import StoredResult

# What a stored counterfactual's validity was judged on (recorded with every batch).
SHOWN_IMAGE = "8-bit image as shown (each channel clamped to its pixel range)"


@dataclass(frozen=True)
class CounterfactualOutcome:
    """One reference sample: its class, the class of its counterfactual image, and how far it moved."""

    sample: str
    original: int
    cf: int
    valid: bool
    l1: Optional[float]
    l2: Optional[float]
    changed_fraction: Optional[float]


@dataclass(frozen=True)
class CounterfactualBatch:
    """Untargeted counterfactuals for the first ``n`` samples of a reference set.

    ``valid_rate``: fraction whose shown image flips the decision. ``mean_l1`` / ``mean_l2`` /
    ``mean_changed_fraction``: over the valid ones, in the model's input space."""

    dataset: str
    n: int
    distance: str
    valid_rate: Optional[float]
    mean_l1: Optional[float]
    mean_l2: Optional[float]
    mean_changed_fraction: Optional[float]
    per_sample: tuple[CounterfactualOutcome, ...]
    pixel_levels: int = 256
    validity_judged_on: str = SHOWN_IMAGE
    stored: Optional[StoredResult] = None

    @property
    def result_id(self) -> Optional[int]:
        return self.stored.id if self.stored else None

    def to_summary(self) -> dict[str, Any]:
        """The JSON stored in ``analysis_results.summary`` (the only writer of that shape)."""
        return json_safe({
            "dataset": self.dataset, "n": self.n, "distance": self.distance, "valid_rate": self.valid_rate,
            "mean_l1": self.mean_l1, "mean_l2": self.mean_l2, "mean_changed_fraction": self.mean_changed_fraction,
            "pixel_levels": self.pixel_levels, "validity_judged_on": self.validity_judged_on,
            "per_sample": [{"sample": o.sample, "original": o.original, "cf": o.cf, "valid": o.valid, "l1": o.l1,
                            "l2": o.l2, "changed_fraction": o.changed_fraction} for o in self.per_sample],
        })

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], stored: Optional[StoredResult] = None) -> "CounterfactualBatch":
        return cls(
            dataset=str(s.get("dataset", "")), n=int(s.get("n") or 0), distance=str(s.get("distance", "l2")),
            valid_rate=finite_or_none(s.get("valid_rate")), mean_l1=finite_or_none(s.get("mean_l1")),
            mean_l2=finite_or_none(s.get("mean_l2")), mean_changed_fraction=finite_or_none(s.get("mean_changed_fraction")),
            per_sample=tuple(CounterfactualOutcome(
                sample=str(o["sample"]), original=int(o["original"]), cf=int(o["cf"]), valid=bool(o["valid"]),
                l1=finite_or_none(o.get("l1")), l2=finite_or_none(o.get("l2")),
                changed_fraction=finite_or_none(o.get("changed_fraction"))) for o in s.get("per_sample") or ()),
            pixel_levels=int(s.get("pixel_levels") or 0),
            validity_judged_on=str(s.get("validity_judged_on") or "the model input (before 8-bit rounding)"),
            stored=stored)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> "CounterfactualBatch":
        if stored.kind != "counterfactual":
            raise ValueError(f"result {stored.id} is a {stored.kind} result, not a counterfactual batch")
        return cls.from_summary(stored.summary, stored)


@dataclass(frozen=True)
class DiverseCounterfactuals:
    images: tuple[np.ndarray, ...]  # uint8 [C, H, W], as shown
    classes: tuple[int, ...]
    valid: tuple[bool, ...]
    validity: Optional[float]
    diversity_l2: Optional[float]


@dataclass(frozen=True)
class SampleCounterfactual:
    """One reference sample and its counterfactual as shown (uint8 [C, H, W] images).

    ``valid``, ``cf_class`` and ``probabilities_after`` come from feeding the shown counterfactual image
    back through the model, so what the page shows is what was judged. ``difference`` is the shown
    change in pixel units ([-1, 1]); ``l1``, ``l2``, ``changed_fraction`` are in the model's input space."""

    sample_key: str
    labels: tuple[str, ...]
    true_label: Optional[int]
    original: np.ndarray
    counterfactual: np.ndarray
    original_class: int
    cf_class: int
    target: Optional[int]
    valid: bool
    l1: float
    l2: float
    changed_fraction: float
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    diverse: Optional[DiverseCounterfactuals] = None

    @property
    def difference(self) -> np.ndarray:
        return (self.counterfactual.astype(np.float32) - self.original.astype(np.float32)) / 255.0
