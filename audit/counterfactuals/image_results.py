"""What an image counterfactual search returns: one result per sample and the summary of a set
(validity, proximity, sparsity, diversity)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from audit.counterfactuals.search_box import Distance
from audit.jsonsafe import finite_or_none as _finite


@dataclass
class ImageCounterfactual:
    """One counterfactual for one input [1, C, H, W].

    `valid` is True when the model's decision on `x_cf` is `target` (targeted) or differs from
    `original_class` (untargeted). `x_cf` is the point as it would be shown or stored: every channel
    clamped into its own range and, with `levels`, snapped to that grid, and `valid` is judged on that
    very point. When no valid point was found, `x_cf` is the attempt closest to the decision boundary
    and `valid` is False. `changed_fraction` counts elements that moved by more than `change_tol` x
    (high - low) of their channel. Distances are over all C x H x W elements.
    """

    x: torch.Tensor
    x_cf: torch.Tensor
    original_class: int
    cf_class: int
    target: int | None
    valid: bool
    l1: float
    l2: float
    linf: float
    changed_fraction: float
    distance: Distance
    original_prob: float
    cf_prob: float
    margin: float
    trade_off: float
    iterations: int
    seed: int
    change_tol: float

    @property
    def delta(self) -> torch.Tensor:
        return self.x_cf - self.x

    def to_dict(self, *, include_tensors: bool = False) -> dict[str, Any]:
        """JSON-safe summary; `include_tensors` adds x_cf and delta as nested lists."""
        out: dict[str, Any] = {
            "original_class": self.original_class,
            "cf_class": self.cf_class,
            "target": self.target,
            "valid": self.valid,
            "l1": _finite(self.l1),
            "l2": _finite(self.l2),
            "linf": _finite(self.linf),
            "changed_fraction": _finite(self.changed_fraction),
            "distance": self.distance,
            "original_prob": _finite(self.original_prob),
            "cf_prob": _finite(self.cf_prob),
            "margin": _finite(self.margin),
            "trade_off": _finite(self.trade_off),
            "iterations": self.iterations,
            "seed": self.seed,
            "change_tol": self.change_tol,
            "shape": list(self.x_cf.shape),
        }
        if include_tensors:
            out["x_cf"] = self.x_cf.detach().cpu().tolist()
            out["delta"] = self.delta.detach().cpu().tolist()
        return out


@dataclass
class CounterfactualSet:
    """Several counterfactuals (of one input, or one per input) with the usual quality measures.

    validity: fraction valid. proximity_l1 / proximity_l2: mean distance of the valid ones.
    sparsity: mean changed fraction of the valid ones. diversity_l1 / diversity_l2: mean pairwise
    distance between the valid counterfactuals (meaningful for several counterfactuals of one input).
    """

    items: list[ImageCounterfactual]
    validity: float
    proximity_l1: float
    proximity_l2: float
    sparsity: float
    diversity_l1: float
    diversity_l2: float
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ImageCounterfactual:
        return self.items[i]

    def __iter__(self):
        return iter(self.items)

    def to_dict(self, *, include_tensors: bool = False) -> dict[str, Any]:
        return {
            "validity": _finite(self.validity),
            "proximity_l1": _finite(self.proximity_l1),
            "proximity_l2": _finite(self.proximity_l2),
            "sparsity": _finite(self.sparsity),
            "diversity_l1": _finite(self.diversity_l1),
            "diversity_l2": _finite(self.diversity_l2),
            "warnings": list(self.warnings),
            "items": [c.to_dict(include_tensors=include_tensors) for c in self.items],
        }


def summarise(items: list[ImageCounterfactual], *, pairwise: bool) -> CounterfactualSet:
    valid = [c for c in items if c.valid]
    notes = []
    if len(valid) < len(items):
        notes.append(f"{len(items) - len(valid)} of {len(items)} searches found no valid counterfactual")
    nan = math.nan
    div1 = div2 = nan
    if pairwise and len(valid) >= 2:
        flat = torch.cat([c.x_cf.flatten(1).float().cpu() for c in valid])
        iu = torch.triu_indices(len(valid), len(valid), offset=1)
        div1 = float(torch.cdist(flat, flat, p=1)[iu[0], iu[1]].mean())
        div2 = float(torch.cdist(flat, flat, p=2)[iu[0], iu[1]].mean())
    return CounterfactualSet(
        items=items,
        validity=len(valid) / len(items) if items else nan,
        proximity_l1=sum(c.l1 for c in valid) / len(valid) if valid else nan,
        proximity_l2=sum(c.l2 for c in valid) / len(valid) if valid else nan,
        sparsity=sum(c.changed_fraction for c in valid) / len(valid) if valid else nan,
        diversity_l1=div1,
        diversity_l2=div2,
        warnings=notes,
    )
