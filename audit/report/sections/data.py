"""Section "Data": the reference sets the report and the stored analyses used, the class distribution
and the group attributes of the report's reference set."""

from __future__ import annotations

from typing import Optional, Sequence

from audit.report.content import Section, Table
from audit.report.sections.base import DatasetFacts, ModelFacts, ReferencePredictions, new_section


def data_section(model: ModelFacts, used: Sequence[DatasetFacts], reference: Optional[DatasetFacts],
                 preds: Optional[ReferencePredictions]) -> Section:
    """``used``: every reference set this report or a stored analysis of the version used, by name."""
    sec = new_section("data")
    rows = []
    for d in sorted(used, key=lambda d: d.name):
        rows.append([d.name, d.kind, d.samples, d.sha256, d.description or "-"])
        sec.cite("dataset", d.id, d.sha256, f"reference set {d.name}")
    if rows:
        sec.add(Table(["Reference set", "Kind", "Samples", "Content SHA-256", "Description"], rows,
                      widths=[0.14, 0.07, 0.09, 0.56, 0.14], mono_columns=(3,),
                      caption="Reference sets used by this report or by stored analyses of this version. The "
                              "content hash covers every sample's hash, label and group attributes."))
    if reference is None or preds is None:
        sec.lack(f"No {model.kind} reference set is stored, so performance, explanations and drift cannot be computed.",
                 "build the demo (python -m audit demo) or add a reference set with "
                 "audit.services.core.datasets.add_image_dataset / add_text_dataset, then regenerate the report.")
        return sec
    labels = model.labels
    counts: dict[str, int] = {}
    for y in preds.labels:
        name = "unlabelled" if y is None else (labels[y] if y < len(labels) else str(y))
        counts[name] = counts.get(name, 0) + 1
    sec.add(Table(["Class", "Samples"], [[k, v] for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))],
                  caption=f"Class distribution of {reference.name}.", widths=[0.5, 0.5]))
    attrs: dict[str, dict[str, int]] = {}
    for g in preds.groups:
        for a, v in g.items():
            attrs.setdefault(a, {})
            attrs[a][str(v)] = attrs[a].get(str(v), 0) + 1
    if attrs:
        sec.add(Table(["Group attribute", "Value", "Samples"],
                      [[a, v, n] for a, vals in sorted(attrs.items()) for v, n in sorted(vals.items())],
                      caption="Group attributes recorded with the reference samples (used by the bias audit).",
                      widths=[0.4, 0.3, 0.3]))
    sec.text("Training data is not held by the workbench; the version notes above describe it as registered.", "note")
    return sec
