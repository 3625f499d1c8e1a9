"""Section "Explanation quality": the image metrics scored by default (deletion/insertion faithfulness) against
a random map, the model-randomisation sanity check and localisation on declared regions (images); Integrated
Gradients completeness and ERASER comprehensiveness/sufficiency (texts). Labels, directions and what each
number means are read from the metrics' declarations (``audit.quality``)."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from audit.quality import (CURVE_STEPS, ERASER_METRICS, Completeness, CurveMetric, Deletion, ModelRandomisation,
                           QualityMetric, find_metric, metric_class)
from audit.report.naming import method_label
from audit.report import figures as figs
from audit.report.checks import KIND, RANDOM_MAP, ExplanationQuality
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import Gap, ModelFacts, digest, fmt, new_section
from audit.report.sections.localisation import LocalisationEvidence, add_localisation
from audit.results.base import StoredResult

AREA = "Explanation quality"


def quality_section(model: ModelFacts, *, quality: Optional[ExplanationQuality] = None,
                    stored: Optional[StoredResult] = None, text_gaps: Optional[Sequence[float]] = None,
                    gap: Optional[Gap] = None, curve_steps: int = CURVE_STEPS,
                    localisation: Optional[LocalisationEvidence] = None,
                    text_eraser: Optional[Mapping[str, Any]] = None) -> Section:
    """``quality`` with the ``stored`` result it was read from (images); ``text_gaps``: |IG completeness
    gap| of each explained text; ``gap``: why the image checks are missing."""
    sec = new_section("quality")
    if model.kind == "text":
        sec.text("Deletion/insertion curves and the parameter-randomisation sanity check are image checks in this "
                 "workbench and are skipped for text models.", "note")
        gaps = [abs(float(g)) for g in text_gaps or () if g is not None]
        if gaps:
            sec.text(f"Integrated Gradients {Completeness.label.lower()} on the {len(gaps)} explained texts: mean "
                     f"{np.mean(gaps):.4f}, largest {np.max(gaps):.4f} ({Completeness.description}; "
                     f"{Completeness.better_text()}).")
            sec.find(AREA, "IG completeness gap", "info", f"mean |gap| {np.mean(gaps):.4f}")
            if text_eraser:
                _eraser(sec, text_eraser)
            return sec
        sec.lack("No token attributions were computed.", "regenerate the report without --no-compute.")
        return sec.find(AREA, "faithfulness", "missing", "no token attributions")
    if quality is None:
        gap = gap or Gap("No explanation maps are available for the quality checks.",
                         "store a reference set and regenerate the report (the explanations section computes the "
                         "maps).", "no maps")
        gap.apply(sec)
        return sec.find(AREA, "faithfulness and sanity", "missing", gap.short or "not available")
    if stored is not None:
        sec.cite(KIND, stored.id, stored.pin, "deletion/insertion curves and sanity check")
    _faithfulness(sec, quality, curve_steps)
    _sanity(sec, quality)
    if localisation is not None:
        add_localisation(sec, localisation)
        sec.cite("localisation", None, digest({m: list(v) for m, v in localisation.scores.items()}),
                 f"relevance mass and pointing game on {len(localisation.samples)} samples with regions")
    return sec


def _header(name: str) -> str:
    """A metric's column: its label and which way is better (an unregistered one by its name)."""
    cls = find_metric(name)
    return f"{cls.label} ({cls.better_text()})" if cls is not None else name


def _faithfulness(sec: Section, q: ExplanationQuality, curve_steps: int) -> None:
    methods, metrics = list(q.methods), list(q.metrics)
    declared: list[type[QualityMetric]] = [c for c in map(find_metric, metrics) if c is not None]
    rows, worse = [], []
    for m in methods:
        beats = q.beats_random(m)
        if not beats:
            worse.append(method_label(m))
        rows.append([method_label(m), *(fmt(q.score(k, m)) for k in metrics), "yes" if beats else "no"])
    rows.append(["random map (reference)", *(fmt(q.score(k, RANDOM_MAP)) for k in metrics), "-"])
    steps = f", curves in {curve_steps} steps" if q.fractions else ""
    sec.text(f"Faithfulness on the {q.samples} explained samples{steps}: "
             + "; ".join(f"{c.label}: {c.description} ({c.better_text()})" for c in declared) + ".")
    share = 0.46 / max(1, len(metrics))
    sec.add(Table(["Method", *map(_header, metrics), f"{Deletion.curve_title} beats a random map"], rows,
                  widths=[0.3, *([share] * len(metrics)), 0.24]))
    for c in declared:
        if issubclass(c, CurveMetric) and c.name in q.map_scores.curves:
            sec.add(Figure(figs.curves(list(q.fractions), q.map_scores.curves[c.name], title=c.curve_title,
                                       xlabel=c.curve_axis, ylabel=c.curve_values, reference=RANDOM_MAP),
                           f"Mean {c.curve_title.lower()} curves (dashed: random map).", 11.0))
    sec.find(AREA, "deletion AUC below a random map's", "fail" if worse else "pass",
             f"not better than random: {', '.join(worse)}" if worse else f"all {len(methods)} methods beat a random map")


def _sanity(sec: Section, q: ExplanationQuality) -> None:
    san = q.sanity
    if san is None or not san.correlations:
        return
    flagged = [m for m, f in san.flagged.items() if f]
    sec.add(Figure(figs.sanity_lines(list(san.steps), san.correlations, san.threshold),
                   f"{ModelRandomisation.label} on {san.samples} samples: {ModelRandomisation.description} "
                   f"({ModelRandomisation.better_text()}).", 12.0))
    sec.add(Table(["Method", f"Correlation after full randomisation ({ModelRandomisation.better_text()})", "Verdict"],
                  [[method_label(m), fmt(v[-1] if v else None), _verdict(san, m)] for m, v in san.correlations.items()],
                  widths=[0.3, 0.3, 0.4],
                  caption=f"changed: correlation below {san.threshold} (passes); unchanged: at or above it; "
                          "undefined: a trained or randomised map is constant, so no rank correlation exists "
                          "(a failure, never read as changed)."))
    unchanged = [method_label(m) for m in flagged if san.status.get(m, "unchanged") == "unchanged"]
    undefined = [method_label(m) for m in flagged if san.status.get(m) == "undefined"]
    parts = ([f"insensitive to the model: {', '.join(unchanged)}"] if unchanged else []) + \
            ([f"undefined (constant maps): {', '.join(undefined)}"] if undefined else [])
    sec.find(AREA, "sanity check (model randomisation)", "fail" if flagged else "pass",
             "; ".join(parts) if flagged else "every method's maps change when the model is randomised")


def _verdict(san, method: str) -> str:  # noqa: ANN001 - a SanityOutcome
    status = san.status.get(method)
    if status is None:  # stored before statuses were recorded
        return "flagged" if san.flagged.get(method) else "changed"
    return status


def _eraser(sec: Section, scores: Mapping[str, Any]) -> None:
    """ERASER comprehensiveness and sufficiency (AOPC over top-k% bins), each as its metric declares it."""
    first = next(iter(scores.values()))
    declared = [metric_class(name) for name in ERASER_METRICS]
    bins = ", ".join(f"{float(b) * 100:g}%" for b in first.per_bin)
    sec.text(f"ERASER faithfulness on the {first.texts} explained texts (AOPC over the top {bins} of tokens): "
             + "; ".join(f"{c.label.lower()} is the {c.description} ({c.better_text()})" for c in declared) + ".")
    sec.add(Table(["Method", *(c.label for c in declared)],
                  [[method_label(m), *(fmt(getattr(e, c.name)) for c in declared)] for m, e in scores.items()],
                  widths=[0.4, 0.3, 0.3]))
    sec.cite("eraser", None, digest({m: [getattr(e, c.name) for c in declared] for m, e in scores.items()}),
             f"ERASER comprehensiveness and sufficiency on {first.texts} texts, computed at report time")
    lead = declared[0]
    pick = max if lead.direction == "higher" else min
    best = pick(scores.values(), key=lambda e: getattr(e, lead.name))
    sec.find(AREA, "ERASER comprehensiveness / sufficiency", "info",
             f"{method_label(best.method)}: " + ", ".join(f"{c.label.lower()} {getattr(best, c.name):.3f}"
                                                          for c in declared))
