"""Turn two versions' maps and stored numbers into a drift assessment: distributions, summaries, flags.

Pure compute on arrays and plain summaries; the service decides what to load and where to store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from audit.drift.deltas import (
    ConceptDelta,
    DisparityDelta,
    MetricDelta,
    bias_deltas,
    metric_deltas,
    tcav_deltas,
)
from audit.drift.similarity import MapSimilarity, Maps, compare_maps
from audit.jsonsafe import json_safe
from audit.results.concepts import ConceptTest

SIMILARITY_METRICS = ("rank_correlation", "topk_intersection", "topk_iou", "ssim")
QUANTILES = {"p10": 10, "p25": 25, "median": 50, "p75": 75, "p90": 90}


@dataclass(frozen=True)
class DriftThresholds:
    """When drift is flagged. A method is flagged when its MEAN similarity falls below a minimum; None
    turns a check off. Metric, concept and bias checks compare the two versions' stored results."""

    min_rank_correlation: Optional[float] = 0.7
    min_topk_iou: Optional[float] = 0.5
    min_ssim: Optional[float] = None
    max_accuracy_drop: float = 0.05
    max_tcav_score_change: float = 0.3
    max_disparity_increase: float = 0.1
    min_prediction_agreement: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("min_rank_correlation", "min_topk_iou", "min_ssim", "min_prediction_agreement"):
            v = getattr(self, name)
            if v is not None and not (-1.0 <= v <= 1.0):
                raise ValueError(f"{name} must lie in [-1, 1] or be None, got {v}")
        for name in ("max_accuracy_drop", "max_tcav_score_change", "max_disparity_increase"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftThresholds":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown drift threshold(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**dict(data))


def distribution(values: np.ndarray) -> dict[str, Optional[float]]:
    """Mean, quantiles and range of the finite values (None everywhere when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, **{k: None for k in QUANTILES}, "min": None, "max": None}
    out: dict[str, Optional[float]] = {"n": int(v.size), "mean": float(v.mean())}
    for name, q in QUANTILES.items():
        out[name] = float(np.percentile(v, q))
    out["min"], out["max"] = float(v.min()), float(v.max())
    return out


@dataclass
class MethodDrift:
    method: str
    similarity: MapSimilarity
    summary: dict[str, dict[str, Optional[float]]]
    flagged: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "reasons": list(self.reasons), "n": len(self.similarity),
                **{m: dict(self.summary[m]) for m in SIMILARITY_METRICS}}


def _method_flags(summary: Mapping[str, Mapping[str, Optional[float]]], thresholds: DriftThresholds,
                  top_k: float) -> list[str]:
    checks = (("rank_correlation", thresholds.min_rank_correlation, "mean rank correlation"),
              ("topk_iou", thresholds.min_topk_iou, f"mean top-{top_k:.0%} IoU"),
              ("ssim", thresholds.min_ssim, "mean SSIM"))
    reasons = []
    for metric, minimum, label in checks:
        mean = summary[metric].get("mean")
        if minimum is not None and mean is not None and mean < minimum:
            reasons.append(f"{label} {mean:.3f} < {minimum:.2f}")
    return reasons


def compare_method(method: str, base: Maps, new: Maps, *, thresholds: DriftThresholds = DriftThresholds(),
                   top_k: float = 0.1) -> MethodDrift:
    """Per-sample similarity of one method's maps, its distribution, and whether it is flagged."""
    sim = compare_maps(base, new, top_k=top_k)
    summary = {m: distribution(getattr(sim, m)) for m in SIMILARITY_METRICS}
    reasons = _method_flags(summary, thresholds, top_k)
    return MethodDrift(method, sim, summary, bool(reasons), reasons)


@dataclass
class PredictionChange:
    """How the two versions' decisions on the compared samples differ."""

    n: int
    agreement: float
    base_accuracy: Optional[float]
    new_accuracy: Optional[float]
    flagged: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_change(base_pred: Sequence[int], new_pred: Sequence[int], labels: Sequence[Optional[int]] = (),
                      *, thresholds: DriftThresholds = DriftThresholds()) -> PredictionChange:
    b, n = np.asarray(base_pred), np.asarray(new_pred)
    if b.shape != n.shape or b.ndim != 1 or b.size == 0:
        raise ValueError("base and new predictions must be non-empty 1-D sequences of the same length")
    agreement = float((b == n).mean())
    known = [i for i, y in enumerate(labels) if y is not None] if len(labels) == len(b) else []
    y = np.asarray([labels[i] for i in known])
    base_acc = float((b[known] == y).mean()) if known else None
    new_acc = float((n[known] == y).mean()) if known else None
    reasons = []
    if thresholds.min_prediction_agreement is not None and agreement < thresholds.min_prediction_agreement:
        reasons.append(f"the versions agree on {agreement:.1%} of samples (< {thresholds.min_prediction_agreement:.0%})")
    if base_acc is not None and new_acc is not None and new_acc < base_acc - thresholds.max_accuracy_drop:
        reasons.append(f"accuracy on the compared samples fell from {base_acc:.1%} to {new_acc:.1%}")
    return PredictionChange(int(b.size), agreement, base_acc, new_acc, bool(reasons), "; ".join(reasons))


@dataclass
class DriftResult:
    """Everything that changed between two versions, with the flags that the thresholds raise."""

    methods: dict[str, MethodDrift]
    thresholds: DriftThresholds
    top_k: float
    metrics: list[MetricDelta] = field(default_factory=list)
    concepts: list[ConceptDelta] = field(default_factory=list)
    disparities: list[DisparityDelta] = field(default_factory=list)
    predictions: Optional[PredictionChange] = None

    @property
    def flags(self) -> list[str]:
        out = [f"{m}: {r}" for m, d in self.methods.items() for r in d.reasons]
        out += [d.reason for d in self.metrics if d.flagged]
        out += [f"TCAV {c.concept} @ {c.layer} (class {c.target_label}): {c.reason}" for c in self.concepts if c.flagged]
        out += [f"bias {d.dataset} {'/'.join(d.attributes)}: {d.reason}" for d in self.disparities if d.flagged]
        if self.predictions is not None and self.predictions.flagged:
            out.append(self.predictions.reason)
        return out

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def flagged_methods(self) -> list[str]:
        return [m for m, d in self.methods.items() if d.flagged]

    def most_changed(self, method: str, n: int = 8) -> list[int]:
        """Sample indices with the lowest rank correlation first (ties: lowest top-k IoU)."""
        sim = self.methods[method].similarity
        rc = np.nan_to_num(sim.rank_correlation, nan=1.0)
        iou = np.nan_to_num(sim.topk_iou, nan=1.0)
        return [int(i) for i in np.lexsort((iou, rc))[:n]]

    def to_summary(self) -> dict[str, Any]:
        """JSON-safe summary: {"flagged", "flags", "methods": {m: {...}}, "metrics", "concepts", ...}."""
        return json_safe({
            "flagged": self.flagged,
            "flags": self.flags,
            "flagged_methods": self.flagged_methods,
            "methods": {m: d.to_dict() for m, d in self.methods.items()},
            "top_k": self.top_k,
            "thresholds": self.thresholds.to_dict(),
            "metrics": [d.to_dict() for d in self.metrics],
            "concepts": [d.to_dict() for d in self.concepts],
            "disparities": [d.to_dict() for d in self.disparities],
            "predictions": self.predictions.to_dict() if self.predictions else None,
        })


def assess_drift(
    base_maps: Mapping[str, Maps], new_maps: Mapping[str, Maps], *,
    thresholds: DriftThresholds = DriftThresholds(), top_k: float = 0.1,
    base_metrics: Optional[Mapping[str, Any]] = None, new_metrics: Optional[Mapping[str, Any]] = None,
    base_tcav: Sequence[ConceptTest] = (), new_tcav: Sequence[ConceptTest] = (),
    base_bias: Sequence[Mapping[str, Any]] = (), new_bias: Sequence[Mapping[str, Any]] = (),
    base_predictions: Optional[Sequence[int]] = None, new_predictions: Optional[Sequence[int]] = None,
    labels: Sequence[Optional[int]] = (),
) -> DriftResult:
    """Compare every method both versions were explained with, plus the stored metric, TCAV and bias
    summaries, and raise flags per ``thresholds``."""
    missing = set(base_maps) ^ set(new_maps)
    if missing:
        raise ValueError(f"methods {sorted(missing)} were computed for one version only")
    methods = {m: compare_method(m, base_maps[m], new_maps[m], thresholds=thresholds, top_k=top_k)
               for m in base_maps}
    preds = None
    if base_predictions is not None and new_predictions is not None:
        preds = prediction_change(base_predictions, new_predictions, labels, thresholds=thresholds)
    return DriftResult(
        methods=methods, thresholds=thresholds, top_k=top_k,
        metrics=metric_deltas(base_metrics or {}, new_metrics or {}, max_accuracy_drop=thresholds.max_accuracy_drop),
        concepts=tcav_deltas(base_tcav, new_tcav, max_score_change=thresholds.max_tcav_score_change),
        disparities=bias_deltas(base_bias, new_bias, max_disparity_increase=thresholds.max_disparity_increase),
        predictions=preds,
    )
