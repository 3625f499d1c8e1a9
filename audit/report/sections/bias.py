"""Section "Bias audit": per-group performance with confidence intervals, the largest gaps and the
flags of every stored bias audit, checked against the accuracy-gap threshold.

Bias results have no typed reader yet, so this section is the one place that reads their summary."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from audit.report import figures as figs
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import ModelFacts, fmt, new_section, num
from audit.results.base import StoredResult

AREA = "Bias"


def _ci(value: Any) -> Optional[tuple[Any, Any]]:
    return (value[0], value[1]) if isinstance(value, (list, tuple)) and len(value) == 2 else None


def bias_section(model: ModelFacts, audits: Sequence[StoredResult], *, max_gap: float,
                 dataset: Optional[str] = None) -> Section:
    sec = new_section("bias")
    check = f"accuracy gap between groups <= {max_gap:.2f}"
    if not audits:
        sec.lack("No bias audit is stored for this version.",
                 model.command("run a bias audit, e.g. python -m audit bias --family {F} --version {V} --dataset {D} "
                               "(Bias page), then regenerate the report. Report-time accuracy by group is in the "
                               "Performance section.", dataset))
        return sec.find(AREA, check, "missing", "no stored bias audit")
    worst_gap: Optional[float] = None
    flags: list[str] = []
    for audit in audits:
        gap, audit_flags = _one_audit(sec, audit)
        if gap is not None:
            worst_gap = gap if worst_gap is None else max(worst_gap, gap)
        flags += audit_flags
    if worst_gap is None:
        sec.find(AREA, check, "missing", "stored audits hold no accuracy difference")
    else:
        sec.find(AREA, check, "pass" if worst_gap <= max_gap else "fail", f"largest accuracy gap {worst_gap:.4f}")
    if flags:
        sec.find(AREA, "flags raised by the bias audit", "fail", "; ".join(flags[:4]))
    return sec


def _one_audit(sec: Section, audit: StoredResult) -> tuple[Optional[float], list[str]]:
    s = audit.summary
    attrs = ", ".join(str(a) for a in (s.get("attributes") or [])) or "-"
    sec.cite(audit.kind, audit.id, audit.pin, f"bias audit on {s.get('dataset', '?')} by {attrs}")
    sec.text(f"Result {audit.id}: dataset {s.get('dataset', '-')}, groups by {attrs}.")
    groups: list[Mapping[str, Any]] = [g for g in (s.get("by_group") or []) if isinstance(g, Mapping)]
    rows, names, acc, lo, hi = [], [], [], [], []
    for g in groups:
        ci = _ci(g.get("accuracy_ci"))
        rows.append([g.get("group"), fmt(g.get("count")), fmt(g.get("accuracy")),
                     f"{fmt(ci[0])} - {fmt(ci[1])}" if ci else "-", fmt(g.get("selection_rate")), fmt(g.get("tpr")),
                     fmt(g.get("fpr")), fmt(g.get("precision"))])
        a = num(g.get("accuracy"))
        if a is not None:
            names.append(str(g.get("group")))
            acc.append(a)
            lo.append(num(ci[0]) if ci and num(ci[0]) is not None else a)
            hi.append(num(ci[1]) if ci and num(ci[1]) is not None else a)
    sec.add(Table(["Group", "Count", "Accuracy", "Accuracy 95% CI", "Selection rate", "TPR", "FPR", "Precision"],
                  rows, widths=[0.2, 0.08, 0.1, 0.16, 0.12, 0.1, 0.1, 0.14]))
    diff = s.get("difference") if isinstance(s.get("difference"), Mapping) else {}
    worst = s.get("worst_group") if isinstance(s.get("worst_group"), Mapping) else {}
    if diff:
        sec.add(Table(["Metric", "Largest difference between groups", "Worst group"],
                      [[k, fmt(v), worst.get(k, "-")] for k, v in sorted(diff.items())], widths=[0.35, 0.35, 0.3]))
    if names:
        sec.add(Figure(figs.bars_with_ci(names, acc, lo, hi, title="Accuracy by group (95% CI)", ylabel="accuracy",
                                         highlight=int(np.argmin(acc))),
                       "Accuracy by group with confidence intervals (red: lowest).", min(16.0, 5.0 + 1.6 * len(names))))
    flags = [str(f) for f in (s.get("flags") or [])]
    if flags:
        sec.text("Flags raised by the audit: " + "; ".join(flags))
    return num(diff.get("accuracy")), flags
