"""Section "Explanation quality": deletion/insertion faithfulness against a random map and the
model-randomisation sanity check and localisation on declared regions (images); Integrated Gradients
completeness and ERASER comprehensiveness/sufficiency (texts)."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

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
                    gap: Optional[Gap] = None, curve_steps: int = 20,
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
            sec.text(f"Integrated Gradients completeness on the {len(gaps)} explained texts: mean |gap| "
                     f"{np.mean(gaps):.4f}, largest {np.max(gaps):.4f} (logit units; 0 means the attributions add "
                     "up exactly to the change in the model's output).")
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


def _faithfulness(sec: Section, q: ExplanationQuality, curve_steps: int) -> None:
    methods = list(q.methods)
    rows, worse = [], []
    for m in methods:
        beats = q.beats_random(m)
        if not beats:
            worse.append(method_label(m))
        rows.append([method_label(m), fmt(q.deletion_auc.get(m)), fmt(q.insertion_auc.get(m)), "yes" if beats else "no"])
    rows.append(["random map (reference)", fmt(q.deletion_auc.get(RANDOM_MAP)), fmt(q.insertion_auc.get(RANDOM_MAP)),
                 "-"])
    sec.text(f"Faithfulness on the {q.samples} explained samples: the most relevant pixels are removed "
             "(deletion: set to zero; a faithful map makes the probability fall fast, low area) or revealed on a "
             f"blurred canvas (insertion: high area is better), in {curve_steps} steps.")
    sec.add(Table(["Method", "Deletion AUC (lower is better)", "Insertion AUC (higher is better)",
                   "Deletion beats a random map"], rows, widths=[0.3, 0.23, 0.23, 0.24]))
    if q.fractions:
        for name, series, xlabel in (("Deletion", q.deletion, "fraction of pixels removed"),
                                     ("Insertion", q.insertion, "fraction of pixels revealed")):
            sec.add(Figure(figs.curves(list(q.fractions), series, title=name, xlabel=xlabel,
                                       ylabel="probability of the class", reference=RANDOM_MAP),
                           f"Mean {name.lower()} curves (dashed: random map).", 11.0))
    sec.find(AREA, "deletion AUC below a random map's", "fail" if worse else "pass",
             f"not better than random: {', '.join(worse)}" if worse else f"all {len(methods)} methods beat a random map")


def _sanity(sec: Section, q: ExplanationQuality) -> None:
    san = q.sanity
    if san is None or not san.correlations:
        return
    flagged = [m for m, f in san.flagged.items() if f]
    sec.add(Figure(figs.sanity_lines(list(san.steps), san.correlations, san.threshold),
                   f"Sanity check on {san.samples} samples: rank correlation of each method's maps with the "
                   "trained model's maps as layers are randomised from the output down. A method whose maps "
                   "stay similar does not depend on what the model learned.", 12.0))
    sec.add(Table(["Method", "Correlation after full randomisation", "Verdict"],
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
    """ERASER comprehensiveness (higher is better) and sufficiency (lower is better), AOPC over top-k% bins."""
    first = next(iter(scores.values()))
    bins = ", ".join(f"{float(b) * 100:g}%" for b in first.per_bin)
    sec.text(f"ERASER faithfulness on the {first.texts} explained texts (AOPC over the top {bins} of tokens): "
             "comprehensiveness is the drop in the explained class's probability when those tokens are deleted "
             "(higher: the map found what the model uses); sufficiency the drop when only they are kept (lower: "
             "they suffice).")
    sec.add(Table(["Method", "Comprehensiveness", "Sufficiency"],
                  [[method_label(m), fmt(e.comprehensiveness), fmt(e.sufficiency)] for m, e in scores.items()],
                  widths=[0.4, 0.3, 0.3]))
    sec.cite("eraser", None, digest({m: [e.comprehensiveness, e.sufficiency] for m, e in scores.items()}),
             f"ERASER comprehensiveness and sufficiency on {first.texts} texts, computed at report time")
    best = max(scores.values(), key=lambda e: e.comprehensiveness)
    sec.find(AREA, "ERASER comprehensiveness / sufficiency", "info",
             f"{method_label(best.method)}: comprehensiveness {best.comprehensiveness:.3f}, "
             f"sufficiency {best.sufficiency:.3f}")
