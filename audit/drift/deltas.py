"""Changes between two versions' stored numbers: version metrics, TCAV scores and bias disparities.

Inputs are the plain JSON summaries other analyses store; every field is read defensively.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence


def _number(value: Any) -> Optional[float]:
    """A finite float, or None for anything else (bools are flags, not metrics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass
class MetricDelta:
    name: str
    base: Optional[float]
    new: Optional[float]
    delta: Optional[float]
    flagged: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_deltas(base: Mapping[str, Any], new: Mapping[str, Any], *, max_accuracy_drop: float) -> list[MetricDelta]:
    """Numeric metrics of both versions; an accuracy-like metric that falls by more than
    ``max_accuracy_drop`` (absolute) is flagged. Metrics held by one version only are listed unflagged."""
    out = []
    for name in sorted(set(base) | set(new)):
        b, n = _number(base.get(name)), _number(new.get(name))
        if b is None and n is None:
            continue
        delta = None if b is None or n is None else n - b
        flagged = bool(delta is not None and "accuracy" in name.lower() and delta < -max_accuracy_drop)
        reason = f"{name} fell by {-delta:.3f} (> {max_accuracy_drop:.3f})" if flagged else ""
        out.append(MetricDelta(name, b, n, delta, flagged, reason))
    return out


@dataclass
class ConceptDelta:
    target: Optional[int]
    target_label: str
    concept: str
    layer: str
    base_score: Optional[float]
    new_score: Optional[float]
    delta: Optional[float]
    base_significant: Optional[bool]
    new_significant: Optional[bool]
    base_p_value: Optional[float]
    new_p_value: Optional[float]
    flagged: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tcav_cells(summary: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    concepts = summary.get("concepts") or {}
    cells = {}
    if isinstance(concepts, Mapping):
        for concept, layers in concepts.items():
            if isinstance(layers, Mapping):
                for layer, cell in layers.items():
                    if isinstance(cell, Mapping):
                        cells[(str(concept), str(layer))] = cell
    return cells


def _p(cell: Mapping[str, Any]) -> Optional[float]:
    corrected = _number(cell.get("p_value_corrected"))
    return corrected if corrected is not None else _number(cell.get("p_value"))


def tcav_deltas(base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], *,
                max_score_change: float) -> list[ConceptDelta]:
    """Pair TCAV results by target class, then cells by (concept, layer). A cell is flagged when its
    score moves by more than ``max_score_change`` or its significance changes. The newest summary
    per target wins (callers pass summaries oldest first)."""
    by_target_b = {s.get("target"): s for s in base}
    by_target_n = {s.get("target"): s for s in new}
    out = []
    for target in [t for t in by_target_n if t in by_target_b]:
        sb, sn = by_target_b[target], by_target_n[target]
        cb, cn = _tcav_cells(sb), _tcav_cells(sn)
        for key in sorted(set(cb) & set(cn)):
            b, n = cb[key], cn[key]
            bs, ns = _number(b.get("score")), _number(n.get("score"))
            delta = None if bs is None or ns is None else ns - bs
            bsig = b.get("significant") if isinstance(b.get("significant"), bool) else None
            nsig = n.get("significant") if isinstance(n.get("significant"), bool) else None
            reasons = []
            if delta is not None and abs(delta) > max_score_change:
                reasons.append(f"score moved by {delta:+.2f} (> {max_score_change:.2f})")
            if bsig is not None and nsig is not None and bsig != nsig:
                reasons.append("became significant" if nsig else "lost significance")
            label = str(sn.get("target_label") or sb.get("target_label") or target)
            out.append(ConceptDelta(
                target=target if isinstance(target, int) else None, target_label=label, concept=key[0],
                layer=key[1], base_score=bs, new_score=ns, delta=delta, base_significant=bsig,
                new_significant=nsig, base_p_value=_p(b), new_p_value=_p(n), flagged=bool(reasons),
                reason="; ".join(reasons),
            ))
    return out


@dataclass
class DisparityDelta:
    dataset: str
    attributes: list[str]
    metric: str
    base: Optional[float]
    new: Optional[float]
    delta: Optional[float]
    flagged: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bias_key(summary: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    attrs = summary.get("attributes") or []
    return str(summary.get("dataset") or ""), tuple(str(a) for a in attrs) if isinstance(attrs, (list, tuple)) else ()


def bias_deltas(base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], *,
                max_disparity_increase: float) -> list[DisparityDelta]:
    """Pair bias audits by (dataset, attributes); each between-group difference that grows by more than
    ``max_disparity_increase`` is flagged. The newest summary per key wins."""
    kb = {_bias_key(s): s for s in base}
    kn = {_bias_key(s): s for s in new}
    out = []
    for key in [k for k in kn if k in kb]:
        db = kb[key].get("difference") or {}
        dn = kn[key].get("difference") or {}
        if not isinstance(db, Mapping) or not isinstance(dn, Mapping):
            continue
        for metric in sorted(set(db) & set(dn)):
            b, n = _number(db.get(metric)), _number(dn.get(metric))
            delta = None if b is None or n is None else n - b
            flagged = bool(delta is not None and delta > max_disparity_increase)
            reason = (f"{metric} gap between groups grew by {delta:.3f} (> {max_disparity_increase:.3f})"
                      if flagged else "")
            out.append(DisparityDelta(key[0], list(key[1]), metric, b, n, delta, flagged, reason))
    return out
