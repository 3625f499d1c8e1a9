"""The stored results of a bias audit (kind ``bias``) and of the identity-swap probe (kind ``text_probe``).

``to_summary`` is the only writer of the stored JSON and ``from_stored`` the only reader, used by the bias
service, its page, the CLI, drift (``difference``, ``attributes``, ``dataset``) and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

from audit.fairness.probe import SwapDetail
from audit.jsonsafe import finite_or_none, json_safe
from audit.results.base import StoredResult

Interval = tuple[Optional[float], Optional[float]]
_ROW_KEYS = ("group", "count", "small_group")


def _interval(value: Any) -> Interval:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return finite_or_none(value[0]), finite_or_none(value[1])
    return None, None


@dataclass(frozen=True)
class GroupRates:
    """One group's rates (accuracy, selection_rate, tpr, fpr, precision, ...) and their bootstrap intervals."""

    group: str
    count: int
    small_group: bool
    rates: dict[str, Optional[float]]
    intervals: dict[str, Interval] = field(default_factory=dict)

    def rate(self, metric: str) -> Optional[float]:
        return self.rates.get(metric)

    def to_dict(self) -> dict[str, Any]:
        """The flat row the report and the page read: ``{"group", "count", metric: v, metric_ci: [lo, hi]}``."""
        out: dict[str, Any] = {"group": self.group, "count": self.count, "small_group": self.small_group}
        for metric, value in self.rates.items():
            out[metric] = value
            if metric in self.intervals:
                out[f"{metric}_ci"] = list(self.intervals[metric])
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroupRates":
        rates = {k: finite_or_none(v) for k, v in d.items() if k not in _ROW_KEYS and not k.endswith("_ci")}
        intervals = {k[:-3]: _interval(v) for k, v in d.items() if k.endswith("_ci")}
        return cls(group=str(d["group"]), count=int(d.get("count") or 0), small_group=bool(d.get("small_group")),
                   rates=rates, intervals=intervals)


@dataclass(frozen=True)
class DisparityGroup:
    """One group's mean share of |attribution| on its regions (or identity tokens); None in a region-free
    comparison, which has counts only."""

    group: str
    mean: Optional[float]
    ci: Interval
    count: int


@dataclass(frozen=True)
class MapPair:
    groups: tuple[str, str]
    total_variation: Optional[float]
    rank_correlation: Optional[float]


@dataclass(frozen=True)
class MapComparison:
    """Region-free comparison of the groups' mean normalised maps (see ``audit.fairness.maps``)."""

    difference: Optional[float]  # largest total-variation distance between two groups' mean maps
    min_rank_correlation: Optional[float]
    most_different: Optional[tuple[str, str]]
    null_difference: Optional[float]  # the same gap under random relabelling of the samples
    p_value: Optional[float]
    pairs: tuple[MapPair, ...]
    n_perm: int

    def to_dict(self) -> dict[str, Any]:
        return {"difference": self.difference, "min_rank_correlation": self.min_rank_correlation,
                "most_different": list(self.most_different) if self.most_different else None,
                "null_difference": self.null_difference, "p_value": self.p_value, "n_perm": self.n_perm,
                "pairs": [{"groups": list(p.groups), "total_variation": p.total_variation,
                           "rank_correlation": p.rank_correlation} for p in self.pairs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MapComparison":
        most = d.get("most_different")
        return cls(difference=finite_or_none(d.get("difference")),
                   min_rank_correlation=finite_or_none(d.get("min_rank_correlation")),
                   most_different=(str(most[0]), str(most[1])) if most else None,
                   null_difference=finite_or_none(d.get("null_difference")), p_value=finite_or_none(d.get("p_value")),
                   pairs=tuple(MapPair((str(p["groups"][0]), str(p["groups"][1])),
                                       finite_or_none(p.get("total_variation")), finite_or_none(p.get("rank_correlation")))
                               for p in d.get("pairs") or ()),
                   n_perm=int(d.get("n_perm") or 0))


@dataclass(frozen=True)
class ExplanationDisparityFinding:
    """Where the explanations of each group fall.

    ``kind``: ``"region"`` (share of |attribution| on the regions the data declares), ``"tokens"`` (on
    identity words, text models) or ``"map_similarity"`` (the data declares no region: the groups' mean
    normalised maps are compared instead, ``maps``). ``region_source``: ``"declared"``, ``"none"`` or None
    for text. ``note`` says in words which comparison was made and why."""

    method: str
    kind: str
    region_source: Optional[str]
    baseline: Optional[float]
    difference: Optional[float]
    worst_group: Optional[str]
    by_group: tuple[DisparityGroup, ...]
    note: str = ""
    n_without_region: int = 0
    maps: Optional[MapComparison] = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "kind": self.kind, "region_source": self.region_source,
                "baseline": self.baseline, "difference": self.difference, "worst_group": self.worst_group,
                "by_group": [{"group": g.group, "mean": g.mean, "ci": list(g.ci), "count": g.count}
                             for g in self.by_group],
                "note": self.note, "n_without_region": self.n_without_region,
                "map_similarity": self.maps.to_dict() if self.maps else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExplanationDisparityFinding":
        maps = d.get("map_similarity")
        worst = d.get("worst_group")
        return cls(method=str(d["method"]), kind=str(d["kind"]), region_source=d.get("region_source"),
                   baseline=finite_or_none(d.get("baseline")), difference=finite_or_none(d.get("difference")),
                   worst_group=None if worst in (None, "None") else str(worst),
                   by_group=tuple(DisparityGroup(str(g["group"]), finite_or_none(g.get("mean")), _interval(g.get("ci")),
                                                 int(g.get("count") or 0)) for g in d.get("by_group") or ()),
                   note=str(d.get("note") or ""), n_without_region=int(d.get("n_without_region") or 0),
                   maps=MapComparison.from_dict(maps) if maps else None)


@dataclass(frozen=True)
class BiasAudit:
    """Per-group performance of one version on one reference set, the gaps between groups and the flags."""

    dataset: str
    attributes: tuple[str, ...]
    n: int
    by_group: tuple[GroupRates, ...]
    overall: dict[str, Optional[float]]
    difference: dict[str, Optional[float]]
    ratio: dict[str, Optional[float]]
    demographic_parity_difference: Optional[float]
    equalized_odds_difference: Optional[float]
    worst_group: dict[str, str]
    flags: tuple[str, ...]
    n_boot: int
    positive_label: Optional[int]
    average: Optional[str]
    explanation_disparity: Optional[ExplanationDisparityFinding] = None
    stored: Optional[StoredResult] = None

    @property
    def result_id(self) -> Optional[int]:
        return self.stored.id if self.stored else None

    def group(self, name: str) -> GroupRates:
        for g in self.by_group:
            if g.group == name:
                return g
        raise KeyError(f"no group {name!r} in this audit")

    def to_summary(self) -> dict[str, Any]:
        """The JSON stored in ``analysis_results.summary`` (the only writer of that shape)."""
        out: dict[str, Any] = {
            "dataset": self.dataset, "attributes": list(self.attributes), "n": self.n,
            "by_group": [g.to_dict() for g in self.by_group], "overall": dict(self.overall),
            "difference": dict(self.difference), "ratio": dict(self.ratio),
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference, "worst_group": dict(self.worst_group),
            "flags": list(self.flags), "n_boot": self.n_boot, "positive_label": self.positive_label,
            "average": self.average,
        }
        if self.explanation_disparity is not None:
            out["explanation_disparity"] = self.explanation_disparity.to_dict()
        return json_safe(out)

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], stored: Optional[StoredResult] = None) -> "BiasAudit":
        disparity = s.get("explanation_disparity")
        pos = s.get("positive_label")
        return cls(
            dataset=str(s.get("dataset", "")), attributes=tuple(str(a) for a in s.get("attributes") or ()),
            n=int(s.get("n") or 0), by_group=tuple(GroupRates.from_dict(g) for g in s.get("by_group") or ()),
            overall={k: finite_or_none(v) for k, v in (s.get("overall") or {}).items()},
            difference={k: finite_or_none(v) for k, v in (s.get("difference") or {}).items()},
            ratio={k: finite_or_none(v) for k, v in (s.get("ratio") or {}).items()},
            demographic_parity_difference=finite_or_none(s.get("demographic_parity_difference")),
            equalized_odds_difference=finite_or_none(s.get("equalized_odds_difference")),
            worst_group={k: str(v) for k, v in (s.get("worst_group") or {}).items()},
            flags=tuple(str(f) for f in s.get("flags") or ()), n_boot=int(s.get("n_boot") or 0),
            positive_label=None if pos is None else int(pos), average=s.get("average"),
            explanation_disparity=ExplanationDisparityFinding.from_dict(disparity) if disparity else None,
            stored=stored)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> "BiasAudit":
        if stored.kind != "bias":
            raise ValueError(f"result {stored.id} is a {stored.kind} result, not a bias audit")
        return cls.from_summary(stored.summary, stored)


@dataclass(frozen=True)
class TextSwapProbe:
    """Identity-swap probe of a text model on a reference set: how often the decision flips."""

    dataset: str
    n: int
    n_excluded: int
    flip_rate: Optional[float]
    mean_prob_change: Optional[float]
    max_prob_change: Optional[float]
    examples: tuple[SwapDetail, ...] = ()  # probed texts whose decision moved
    stored: Optional[StoredResult] = None

    @property
    def result_id(self) -> Optional[int]:
        return self.stored.id if self.stored else None

    def to_summary(self) -> dict[str, Any]:
        return json_safe({"dataset": self.dataset, "n": self.n, "n_excluded": self.n_excluded,
                          "flip_rate": self.flip_rate, "mean_prob_change": self.mean_prob_change,
                          "max_prob_change": self.max_prob_change, "examples": [asdict(e) for e in self.examples]})

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], stored: Optional[StoredResult] = None) -> "TextSwapProbe":
        names = {f.name for f in fields(SwapDetail)}
        return cls(dataset=str(s.get("dataset", "")), n=int(s.get("n") or 0), n_excluded=int(s.get("n_excluded") or 0),
                   flip_rate=finite_or_none(s.get("flip_rate")), mean_prob_change=finite_or_none(s.get("mean_prob_change")),
                   max_prob_change=finite_or_none(s.get("max_prob_change")),
                   examples=tuple(SwapDetail(**{k: v for k, v in e.items() if k in names})
                                  for e in s.get("examples") or ()),
                   stored=stored)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> "TextSwapProbe":
        if stored.kind != "text_probe":
            raise ValueError(f"result {stored.id} is a {stored.kind} result, not an identity-swap probe")
        return cls.from_summary(stored.summary, stored)
