"""Score a set of maps under several metrics at once: each map's mean score per metric and the mean curve of
each curve metric. One result type for the report's quality pass and the Explain page's Faithfulness tab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from .base import CurveMetric, QualityMetric
from .registry import default_metrics

CURVES_DISAGREE = ("curve metrics scored together must share their steps: {a} has {n_a} points, {b} has {n_b}; "
                   "give them the same `steps`")


@dataclass(frozen=True)
class MapScores:
    """Per metric and map: the mean score over the samples (None where undefined for every sample); per curve
    metric and map: the mean curve over ``fractions``."""

    samples: int
    methods: tuple[str, ...]
    scores: dict[str, dict[str, Optional[float]]]  # metric -> map name -> mean score
    fractions: tuple[float, ...] = ()
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # curve metric -> map name -> curve

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "methods": list(self.methods), "scores": self.scores,
                "fractions": list(self.fractions), "curves": self.curves}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MapScores":
        return cls(samples=int(d.get("samples") or 0), methods=tuple(d.get("methods") or ()),
                   scores={k: dict(v) for k, v in (d.get("scores") or {}).items()},
                   fractions=tuple(d.get("fractions") or ()),
                   curves={k: {m: list(c) for m, c in v.items()} for k, v in (d.get("curves") or {}).items()})


def _mean(values: torch.Tensor) -> Optional[float]:
    """The mean over the samples where the score is finite; None when none is."""
    ok = torch.isfinite(values)
    if bool(ok.all()):
        return float(values.mean())
    return float(values[ok].mean()) if bool(ok.any()) else None


def score_maps(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, maps: Mapping[str, Any], *,
               metrics: Optional[Sequence[QualityMetric]] = None, **data: Any) -> MapScores:
    """Score each of ``maps`` (name -> attributions of ``inputs`` for ``targets``) under each metric (default:
    every ``by_default`` image metric at its declared settings); ``data`` goes to every metric (``regions``)."""
    metrics = default_metrics("image") if metrics is None else list(metrics)
    scores: dict[str, dict[str, Optional[float]]] = {m.name: {} for m in metrics}
    curves: dict[str, dict[str, list[float]]] = {}
    fractions: Optional[tuple[float, ...]] = None
    first_curve = ""
    for name, attr in maps.items():
        attr = torch.as_tensor(attr).to(inputs.device)
        for metric in metrics:
            res = metric(model, inputs, targets, attr, **data)
            scores[metric.name][name] = _mean(res.values)
            if not isinstance(metric, CurveMetric):
                continue
            got = tuple(res.fractions.tolist())
            if fractions is None:
                fractions, first_curve = got, metric.name
            elif got != fractions:
                raise ValueError(CURVES_DISAGREE.format(a=first_curve, n_a=len(fractions), b=metric.name, n_b=len(got)))
            curves.setdefault(metric.name, {})[name] = res.curves.mean(0).tolist()
    return MapScores(samples=int(inputs.shape[0]), methods=tuple(maps), scores=scores, fractions=fractions or (),
                     curves=curves)
