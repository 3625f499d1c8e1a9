"""Localisation part of "Explanation quality": how much of each method's relevance falls inside the regions
the reference set declares, against the share a map spread evenly would put there."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.report.content import Section, Table
from audit.report.naming import method_label
from audit.report.sections.base import fmt

AREA = "Explanation quality"


@dataclass
class LocalisationEvidence:
    dataset: str
    samples: list[str]
    targets: list[int]
    scores: dict[str, tuple[float, float]]  # method -> (relevance mass accuracy, pointing game hit rate)
    chance: float  # mean share of the map that the regions cover: what an even map scores
    explanation_ids: list[int] = field(default_factory=list)


def add_localisation(sec: Section, ev: LocalisationEvidence) -> Section:
    rows = [[method_label(m), fmt(mass), fmt(point), fmt(ev.chance)] for m, (mass, point) in ev.scores.items()]
    sec.text(f"Localisation on {len(ev.samples)} samples of {ev.dataset} that declare a region, explaining the "
             "predicted class: relevance mass accuracy (share of |relevance| inside the region) and the pointing "
             "game (share of samples whose most relevant pixel lies inside it). A map spread evenly would score "
             "the regions' share of the image (last column). Whether a high share is good depends on what the "
             "regions mark: the object (good) or an artefact such as a stamp or a patch (a shortcut).")
    sec.add(Table(["Method", "Relevance mass", "Pointing game", "Even map"], rows, widths=[0.34, 0.22, 0.22, 0.22]))
    best = max(ev.scores.items(), key=lambda kv: kv[1][0])
    ratio = best[1][0] / ev.chance if ev.chance > 0 else float("nan")
    sec.find(AREA, "localisation on declared regions", "info",
             f"{method_label(best[0])} puts {best[1][0]:.2f} of its relevance inside the regions "
             f"({ratio:.1f}x an even map), pointing game {best[1][1]:.2f}")
    return sec
