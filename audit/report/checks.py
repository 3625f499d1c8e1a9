"""The report's explanation-quality checks on its own samples: every metric declared ``by_default`` for images
(deletion and insertion curves among them) on each method's maps and on a random map, and the
model-randomisation sanity check. One typed result, with its writer (``to_summary``, stored as kind
``explanation_quality``) and its reader (``from_summary``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from audit.jsonsafe import finite_or_none
from audit.quality import (CURVE_STEPS, Deletion, Insertion, MapScores, ModelRandomisation, QualityMetric,
                           default_metrics, sanity_check, score_maps)

KIND = "explanation_quality"
RANDOM_MAP = "random"


@dataclass(frozen=True)
class SanityOutcome:
    steps: tuple[str, ...]
    correlations: dict[str, list[float]]  # method -> rank correlation with the trained maps, per step
    flagged: dict[str, bool]
    threshold: float
    samples: int
    status: dict[str, str] = field(default_factory=dict)  # changed | unchanged | undefined
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplanationQuality:
    """Each metric's mean score and each curve metric's mean curve per method (plus ``random``), and the sanity
    check."""

    map_scores: MapScores
    sanity: Optional[SanityOutcome] = None

    @property
    def samples(self) -> int:
        return self.map_scores.samples

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.map_scores.methods if m != RANDOM_MAP)

    @property
    def fractions(self) -> tuple[float, ...]:
        return self.map_scores.fractions

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.map_scores.scores)

    def score(self, metric: str, method: str) -> Optional[float]:
        return self.map_scores.scores.get(metric, {}).get(method)

    @property
    def deletion_auc(self) -> dict[str, Optional[float]]:
        return self.map_scores.scores.get(Deletion.name, {})

    @property
    def insertion_auc(self) -> dict[str, Optional[float]]:
        return self.map_scores.scores.get(Insertion.name, {})

    def beats_random(self, method: str) -> bool:
        """A faithful map makes the probability fall faster than a random one: a better deletion AUC."""
        d, r = self.score(Deletion.name, method), self.score(Deletion.name, RANDOM_MAP)
        return d is not None and r is not None and Deletion.better(d, r)

    @property
    def cited(self) -> list[str]:
        """The metrics this result reports, for the report's references."""
        return [*self.metrics, *([ModelRandomisation.name] if self.sanity is not None else [])]

    def to_summary(self) -> dict[str, Any]:
        s = self.map_scores.to_dict()
        if self.sanity is not None:
            s["sanity"] = {"steps": list(self.sanity.steps), "correlations": self.sanity.correlations,
                           "flagged": self.sanity.flagged, "threshold": self.sanity.threshold,
                           "samples": self.sanity.samples, "status": dict(self.sanity.status),
                           "reasons": dict(self.sanity.reasons)}
        return s

    @classmethod
    def from_summary(cls, s: Mapping[str, Any]) -> "ExplanationQuality":
        san = s.get("sanity") or None
        sanity = None if not san else SanityOutcome(
            steps=tuple(san.get("steps") or ()), correlations={k: list(v) for k, v in (san.get("correlations") or {}).items()},
            flagged={k: bool(v) for k, v in (san.get("flagged") or {}).items()},
            threshold=float(san.get("threshold", 0.5)), samples=int(san.get("samples") or 0),
            status={k: str(v) for k, v in (san.get("status") or {}).items()},
            reasons={k: str(v) for k, v in (san.get("reasons") or {}).items()})
        scores = MapScores.from_dict(s)
        finite = {k: {m: finite_or_none(v) for m, v in by_method.items()} for k, by_method in scores.scores.items()}
        return cls(map_scores=replace(scores, scores=finite), sanity=sanity)


def report_metrics(steps: int = CURVE_STEPS) -> list[QualityMetric]:
    """The metrics the report's quality pass scores: every ``by_default`` image metric, curves in ``steps``."""
    return default_metrics("image", steps=steps)


def explanation_quality(model: nn.Module, x: torch.Tensor, targets: Sequence[int], maps: Mapping[str, np.ndarray], *,
                        layer: Optional[str], steps: int, sanity_methods: Sequence[str], sanity_samples: int,
                        sanity_max_steps: int = 4, ig_steps: int = 16, seed: int = 0,
                        metrics: Optional[Sequence[QualityMetric]] = None) -> ExplanationQuality:
    """Every one of ``metrics`` (default :func:`report_metrics`) on each map and on a seeded random map, on
    inputs ``x``; the sanity check of ``sanity_methods`` on the first ``sanity_samples`` inputs."""
    if x.shape[0] != len(targets):
        raise ValueError(f"{x.shape[0]} inputs but {len(targets)} targets; give one target per input")
    t = torch.tensor(list(targets), device=x.device)
    g = torch.Generator().manual_seed(seed)
    random_map = torch.rand((x.shape[0], x.shape[2], x.shape[3]), generator=g)
    scored = score_maps(model, x, t, {**maps, RANDOM_MAP: random_map},
                        metrics=report_metrics(steps) if metrics is None else metrics)
    n = min(sanity_samples, x.shape[0])
    sanity = None
    if sanity_methods and n:
        res = sanity_check(model, x[:n], t[:n], list(sanity_methods), layer=layer, max_steps=sanity_max_steps,
                           ig_steps=ig_steps)
        sanity = SanityOutcome(tuple(res.steps), {k: [float(v) for v in vs] for k, vs in res.correlations.items()},
                               {k: bool(v) for k, v in res.flagged.items()}, float(res.threshold), n,
                               status=dict(res.status), reasons={k: res.reason(k) for k in res.status})
    return ExplanationQuality(map_scores=scored, sanity=sanity)
