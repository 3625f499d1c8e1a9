"""The stored result of a drift comparison between two versions, read back into typed parts.

The drift service writes ``DriftResult.to_summary()`` plus provenance; ``DriftAssessment.from_stored``
is the one reader used by the Drift page, the report's drift section, drift trends and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

from audit.drift.deltas import ConceptDelta, DisparityDelta, MetricDelta
from audit.results.base import StoredResult


def _build(cls: type, d: Mapping[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class MethodSimilarity:
    """How similar one method's maps are between the versions: distributions over samples."""

    method: str
    flagged: bool
    reasons: tuple[str, ...]
    n: int
    rank_correlation: dict[str, Optional[float]]
    topk_iou: dict[str, Optional[float]]
    ssim: dict[str, Optional[float]]


@dataclass(frozen=True)
class PredictionAgreement:
    n: int
    agreement: Optional[float]
    base_accuracy: Optional[float]
    new_accuracy: Optional[float]
    flagged: bool
    reason: str = ""


@dataclass(frozen=True)
class DriftAssessment:
    family: str
    base: str
    new: str
    dataset: str
    samples: int
    flagged: bool
    flags: tuple[str, ...]
    methods: dict[str, MethodSimilarity]
    metrics: tuple[MetricDelta, ...]
    concepts: tuple[ConceptDelta, ...]
    disparities: tuple[DisparityDelta, ...]
    predictions: Optional[PredictionAgreement]
    thresholds: dict[str, Any]
    top_k: float
    target_rule: str = ""
    task: str = ""
    most_changed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    explanation_ids: dict[str, list[int]] = field(default_factory=dict)
    stored: Optional[StoredResult] = None

    @property
    def flagged_methods(self) -> list[str]:
        return [m for m, d in self.methods.items() if d.flagged]

    @property
    def result_id(self) -> Optional[int]:
        return self.stored.id if self.stored else None

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], stored: Optional[StoredResult] = None) -> "DriftAssessment":
        methods = {m: MethodSimilarity(method=m, flagged=bool(d.get("flagged")), reasons=tuple(d.get("reasons") or ()),
                                       n=int(d.get("n") or 0), rank_correlation=dict(d.get("rank_correlation") or {}),
                                       topk_iou=dict(d.get("topk_iou") or {}), ssim=dict(d.get("ssim") or {}))
                   for m, d in (s.get("methods") or {}).items()}
        preds = s.get("predictions")
        return cls(
            family=str(s.get("family", "")), base=str(s.get("base", "")), new=str(s.get("new", "")),
            dataset=str(s.get("dataset", "")), samples=int(s.get("samples") or 0), flagged=bool(s.get("flagged")),
            flags=tuple(s.get("flags") or ()), methods=methods,
            metrics=tuple(_build(MetricDelta, d) for d in s.get("metrics") or ()),
            concepts=tuple(_build(ConceptDelta, d) for d in s.get("concepts") or ()),
            disparities=tuple(_build(DisparityDelta, d) for d in s.get("disparities") or ()),
            predictions=_build(PredictionAgreement, preds) if preds else None,
            thresholds=dict(s.get("thresholds") or {}), top_k=float(s.get("top_k") or 0.1),
            target_rule=str(s.get("target_rule", "")), task=str(s.get("task", "")),
            most_changed=dict(s.get("most_changed") or {}), explanation_ids=dict(s.get("explanation_ids") or {}),
            stored=stored)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> "DriftAssessment":
        if stored.kind != "drift":
            raise ValueError(f"result {stored.id} is a {stored.kind} result, not a drift comparison")
        return cls.from_summary(stored.summary, stored)
