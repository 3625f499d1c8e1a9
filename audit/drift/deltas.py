"""Changes between two versions' stored numbers: version metrics, TCAV scores and bias disparities.

Concept tests arrive as the typed results their service stores; metrics and bias summaries as JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

from audit.results.concepts import ConceptCell, ConceptTest


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


def tcav_deltas(base: Sequence[ConceptTest], new: Sequence[ConceptTest], *,
                max_score_change: float) -> list[ConceptDelta]:
    """Pair concept tests by target class, then cells by (concept, layer). A cell is flagged when its
    score moves by more than ``max_score_change`` or its significance changes. The newest test per
    target wins (callers pass tests oldest first)."""
    by_target_b = {t.target: t for t in base}
    by_target_n = {t.target: t for t in new}
    out = []
    for target in [t for t in by_target_n if t in by_target_b]:
        tb, tn = by_target_b[target], by_target_n[target]
        cb = {(c.concept, c.layer): c for c in tb.cells}
        cn = {(c.concept, c.layer): c for c in tn.cells}
        for key in sorted(set(cb) & set(cn)):
            b, n = cb[key], cn[key]
            bs, ns = _number(b.score), _number(n.score)
            delta = None if bs is None or ns is None else ns - bs
            reasons = []
            if delta is not None and abs(delta) > max_score_change:
                reasons.append(f"score moved by {delta:+.2f} (> {max_score_change:.2f})")
            if b.significant != n.significant:
                reasons.append("became significant" if n.significant else "lost significance")
            out.append(ConceptDelta(
                target=int(target), target_label=tn.target_label or tb.target_label, concept=key[0],
                layer=key[1], base_score=bs, new_score=ns, delta=delta, base_significant=b.significant,
                new_significant=n.significant, base_p_value=_p(b), new_p_value=_p(n), flagged=bool(reasons),
                reason="; ".join(reasons),
            ))
    return out


def _p(cell: ConceptCell) -> Optional[float]:
    return cell.p_value_corrected if cell.p_value_corrected is not None else cell.p_value


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
