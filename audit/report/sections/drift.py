"""Section "Drift against the previous version": similarity of explanations between the parent and this
version, metric, concept and disparity changes, read through the typed ``DriftAssessment``."""

from __future__ import annotations

from typing import Optional

from audit.report.naming import method_label, method_labels
from audit.report import figures as figs
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import ModelFacts, fmt, new_section
from audit.results.drift import DriftAssessment

AREA = "Drift"


def drift_section(model: ModelFacts, assessment: Optional[DriftAssessment], *, note: Optional[str] = None,
                  dataset: Optional[str] = None) -> Section:
    """``note``: why drift could not be computed; ``dataset``: the reference set named in the hint."""
    sec = new_section("drift")
    parent = model.parent
    if not parent:
        sec.text("This is the first version of its family: there is no previous version to compare with.")
        return sec.find(AREA, "explanations stable against the previous version", "info", "first version")
    if note:
        sec.text(f"Drift could not be computed: {note}", "note")
    if assessment is None:
        sec.lack(f"No drift result against the previous version {parent} is stored.",
                 model.command(f"python -m audit drift --family {{F}} --base {parent} --new {{V}} --dataset {{D}}, "
                               "then regenerate the report.", dataset))
        return sec.find(AREA, "explanations stable against the previous version", "missing", "no drift result")
    a = assessment
    if a.stored is not None:
        sec.cite("drift", a.stored.id, a.stored.pin, f"drift {parent} -> {model.version}")
    th = a.thresholds
    sec.text(f"Version {model.version} compared with {parent} on {a.samples} samples of {a.dataset} "
             f"(result {a.result_id}). {a.target_rule.capitalize()}. Measures per sample: "
             f"Spearman rank correlation of the relevance maps, overlap of the top {a.top_k:.0%} "
             "most relevant positions (IoU), and SSIM of the display maps. A method is flagged when its mean rank "
             f"correlation is below {th.get('min_rank_correlation')} or its mean top-k IoU below {th.get('min_topk_iou')}.")
    _methods(sec, a, parent, model.version)
    _changes(sec, a, parent, model.version)
    if a.flags:
        sec.text("Flags: " + "; ".join(a.flags))
    return sec.find(AREA, f"explanations stable against version {parent}", "fail" if a.flagged else "pass",
                    f"{len(a.flags)} flag(s); methods: {', '.join(method_labels(a.flagged_methods)) or 'none'}" if a.flagged
                    else "no drift flagged")


def _methods(sec: Section, a: DriftAssessment, parent: str, version: str) -> None:
    rows = [[method_label(m), fmt(d.rank_correlation.get("mean")), fmt(d.rank_correlation.get("median")),
             fmt(d.rank_correlation.get("p10")), fmt(d.topk_iou.get("mean")), fmt(d.ssim.get("mean")),
             "FLAG" if d.flagged else "ok"] for m, d in a.methods.items()]
    sec.add(Table(["Method", "Rank corr. mean", "Rank corr. median", "Rank corr. p10", "Top-k IoU mean",
                   "SSIM mean", "Flag"], rows, widths=[0.25, 0.13, 0.11, 0.11, 0.14, 0.13, 0.13]))
    if a.methods:
        names = list(a.methods)
        sec.add(Figure(figs.grouped_bars(names, {
            "rank correlation": [a.methods[m].rank_correlation.get("mean") for m in names],
            "top-k IoU": [a.methods[m].topk_iou.get("mean") for m in names],
            "SSIM": [a.methods[m].ssim.get("mean") for m in names]},
            title=f"Similarity of explanations, {parent} vs {version}", ylabel="mean over samples",
            ylim=(-0.1, 1.05)), "Mean similarity per method (1 = unchanged).", 11.0))


def _changes(sec: Section, a: DriftAssessment, parent: str, version: str) -> None:
    metric_rows = [[d.name, fmt(d.base), fmt(d.new), fmt(d.delta), "FLAG" if d.flagged else ""] for d in a.metrics]
    p = a.predictions
    if p is not None:
        if p.base_accuracy is not None and p.new_accuracy is not None:
            metric_rows.append([f"accuracy on the {p.n} compared samples", fmt(p.base_accuracy), fmt(p.new_accuracy),
                                fmt(p.new_accuracy - p.base_accuracy), "FLAG" if p.flagged else ""])
        metric_rows.append(["share of samples where both versions predict the same class", "-", fmt(p.agreement),
                            "-", ""])
    if metric_rows:
        sec.add(Table(["Metric", parent, version, "Change", "Flag"], metric_rows, widths=[0.36, 0.16, 0.16, 0.16, 0.16]))
    # A concept delta without a score in either version says nothing a reader can check.
    concept_rows = [[d.concept, d.layer, d.target_label, fmt(d.base_score), fmt(d.new_score), d.reason or ""]
                    for d in a.concepts if d.base_score is not None or d.new_score is not None]
    if concept_rows:
        sec.add(Table(["Concept", "Layer", "Class", f"Score {parent}", f"Score {version}", "Flag"], concept_rows,
                      widths=[0.17, 0.17, 0.07, 0.1, 0.1, 0.39],
                      caption="TCAV scores of the concept tests both versions have for the same class."))
    disp_rows = [[d.dataset, "/".join(d.attributes or []), d.metric, fmt(d.base), fmt(d.new), d.reason or ""]
                 for d in a.disparities]
    if disp_rows:
        sec.add(Table(["Dataset", "Groups", "Gap in", parent, version, "Flag"], disp_rows,
                      widths=[0.18, 0.14, 0.14, 0.1, 0.1, 0.34]))
