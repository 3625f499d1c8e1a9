"""Localisation part of "Explanation quality": how much of each method's relevance falls inside the regions
the reference set declares, against the share a map spread evenly would put there. Column names and what
each number means come from the metrics' declarations."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.quality import LOCALISATION_METRICS, metric_class
from audit.report.content import Section, Table
from audit.report.naming import method_label
from audit.report.sections.base import fmt

AREA = "Explanation quality"


@dataclass
class LocalisationEvidence:
    dataset: str
    samples: list[str]
    targets: list[int]
    scores: dict[str, tuple[float, float]]  # method -> its score under each of LOCALISATION_METRICS, in order
    chance: float  # mean share of the map that the regions cover: what an even map scores
    explanation_ids: list[int] = field(default_factory=list)


def add_localisation(sec: Section, ev: LocalisationEvidence) -> Section:
    declared = [metric_class(name) for name in LOCALISATION_METRICS]
    rows = [[method_label(m), *map(fmt, values), fmt(ev.chance)] for m, values in ev.scores.items()]
    sec.text(f"Localisation on {len(ev.samples)} samples of {ev.dataset} that declare a region, explaining the "
             "predicted class (means over the samples): "
             + "; ".join(f"{c.label.lower()}: {c.description} ({c.better_text()})" for c in declared)
             + ". A map spread evenly would score the regions' share of the image (last column). Whether a high "
             "share is good depends on what the regions mark: the object (good) or an artefact such as a stamp or "
             "a patch (a shortcut).")
    sec.add(Table(["Method", *(c.label for c in declared), "Even map"], rows, widths=[0.34, 0.22, 0.22, 0.22]))
    best = max(ev.scores.items(), key=lambda kv: kv[1][0])
    ratio = best[1][0] / ev.chance if ev.chance > 0 else float("nan")
    sec.find(AREA, "localisation on declared regions", "info",
             f"{method_label(best[0])} puts {best[1][0]:.2f} of its relevance inside the regions "
             f"({ratio:.1f}x an even map), pointing game {best[1][1]:.2f}")
    return sec
