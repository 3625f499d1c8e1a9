"""Section "Counterfactuals and probes": stored counterfactual searches (how easily a decision flips)
and counterfactual text probes (does swapping gendered words flip it), with the probe threshold.

These results have no typed reader yet, so this section is the one place that reads their summary."""

from __future__ import annotations

from typing import Optional, Sequence

from audit.report.content import Section, Table
from audit.report.sections.base import ModelFacts, fmt, new_section, num
from audit.results.base import StoredResult

AREA = "Counterfactuals"


def counterfactuals_section(model: ModelFacts, searches: Sequence[StoredResult], probes: Sequence[StoredResult], *,
                            max_flip_rate: float, dataset: Optional[str] = None) -> Section:
    sec = new_section("counterfactuals")
    if searches:
        rows = []
        for r in searches:
            s = r.summary
            sec.cite(r.kind, r.id, r.pin, f"counterfactual search on {s.get('dataset', '?')}")
            rows.append([r.id, s.get("dataset", "-"), fmt(s.get("n")), fmt(s.get("valid_rate")), fmt(s.get("mean_l1")),
                         fmt(s.get("mean_l2")), fmt(s.get("mean_changed_fraction"))])
        sec.add(Table(["Result", "Dataset", "Samples", "Valid rate", "Mean L1", "Mean L2", "Changed fraction"], rows,
                      widths=[0.08, 0.2, 0.1, 0.12, 0.15, 0.15, 0.2],
                      caption="Smallest input changes that flip the decision: small distances mean decisions that "
                              "are easy to flip."))
        rates = [v for v in (num(r.summary.get("valid_rate")) for r in searches) if v is not None]
        if rates:
            sec.find(AREA, "counterfactual search success", "info", f"valid rate {min(rates):.4f}")
    else:
        sec.lack("No counterfactual result is stored for this version.",
                 model.command("run the counterfactual search (Counterfactuals page) on {D} for {F} {V}, then "
                               "regenerate.", dataset))
    check = f"text probe flip rate <= {max_flip_rate:.2f}"
    if probes:
        rows, worst = [], None
        for r in probes:
            s = r.summary
            sec.cite(r.kind, r.id, r.pin, f"text probe on {s.get('dataset', '?')}")
            rows.append([r.id, s.get("dataset", "-"), fmt(s.get("n")), fmt(s.get("flip_rate")),
                         fmt(s.get("mean_prob_change"))])
            fr = num(s.get("flip_rate"))
            if fr is not None:
                worst = fr if worst is None else max(worst, fr)
        sec.add(Table(["Result", "Dataset", "Texts", "Decision flip rate", "Mean probability change"], rows,
                      widths=[0.1, 0.3, 0.15, 0.2, 0.25],
                      caption="Counterfactual text probes (e.g. swapping gendered words): a fair model's decisions "
                              "should not flip."))
        if worst is not None:
            sec.find(AREA, check, "pass" if worst <= max_flip_rate else "fail", f"flip rate {worst:.4f}")
    elif model.kind == "text":
        sec.lack("No counterfactual text probe is stored for this version.",
                 model.command("run the gender-swap probe (Text page) on {D} for {F} {V}, then regenerate.", dataset))
        sec.find(AREA, check, "missing", "no stored text probe")
    if not searches and model.kind == "image":
        sec.find(AREA, "counterfactual search", "missing", "no stored result")
    return sec
