"""Section "Performance": metrics recorded at registration, and accuracy on the reference set computed
at report time (Wilson intervals, per class, per group), checked against the accuracy threshold."""

from __future__ import annotations

from typing import Optional

import numpy as np

from audit.report import figures as figs
from audit.report import stats
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import ModelFacts, ReferencePredictions, fmt, new_section, num

STORED_ACCURACY_NAMES = ("reference_accuracy", "accuracy", "test_accuracy", "val_accuracy")
MAX_CONFUSION_CLASSES = 20


def performance_section(model: ModelFacts, preds: Optional[ReferencePredictions], *, min_accuracy: float) -> Section:
    sec = new_section("performance")
    metrics = dict(model.info.get("metrics") or {})
    if metrics:
        sec.add(Table(["Metric (recorded at registration)", "Value"], [[k, fmt(v)] for k, v in sorted(metrics.items())],
                      widths=[0.6, 0.4], caption="Metrics stored with the version when it was registered."))
    else:
        sec.text("No metrics were recorded with this version at registration.", "note")
    measured: Optional[float] = None
    source = ""
    if preds is not None and len(preds.probabilities):
        acc = _measured(sec, model, preds)
        if acc is not None:
            measured, source = acc.value, f" on {preds.dataset}"
        sec.cite("predictions", None, preds.sha256, f"class probabilities on {preds.dataset} computed at report time")
    if measured is None:
        name = next((n for n in STORED_ACCURACY_NAMES if num(metrics.get(n)) is not None), None)
        if name is not None:
            measured, source = num(metrics[name]), " (stored)"
    check = f"accuracy >= {min_accuracy:.2f}"
    if measured is None:
        sec.find("Performance", check, "missing", "no labelled reference set and no stored accuracy metric")
        sec.lack("No accuracy could be measured or read.", "store a labelled reference set (python -m audit demo "
                 "or audit.services.core.datasets), or register the version with an accuracy metric.")
    else:
        sec.find("Performance", check, "pass" if measured >= min_accuracy else "fail",
                 f"accuracy {measured:.4f}{source}")
    return sec


def _measured(sec: Section, model: ModelFacts, preds: ReferencePredictions) -> Optional[stats.Accuracy]:
    known, y, p = stats.labelled(preds.labels, preds.predicted)
    if not known:
        sec.text(f"The reference set {preds.dataset} is unlabelled: no accuracy is measured on it.", "note")
        return None
    acc = stats.accuracy(y, p)
    sec.text(f"Accuracy on the reference set {preds.dataset} computed at report time: {acc.value:.4f} "
             f"({acc.correct} of {acc.n} correct; 95% Wilson interval {acc.low:.4f} to {acc.high:.4f}).")
    labels = model.labels
    cm = stats.confusion_matrix(y, p, len(labels))
    # Only the classes the data holds: a 1,000-class model audited on five classes gets five rows.
    present = sorted({int(v) for v in y})
    rates = stats.per_class_rates(cm, labels)
    sec.add(Table(["Class", "Samples", "Recall", "Precision"],
                  [[rates[c].label, rates[c].samples, fmt(rates[c].recall), fmt(rates[c].precision)] for c in present],
                  widths=[0.3, 0.2, 0.25, 0.25],
                  caption=f"Per-class recall and precision on the reference set ({len(present)} of the model's "
                          f"{len(labels)} classes occur in it)."))
    outside = stats.confusions_outside(cm, present)
    if outside:
        sec.add(Table(["Predicted class (not in the data)", "Predictions"], [[labels[c], n] for c, n in outside],
                      widths=[0.6, 0.4], caption="The most frequent predictions of classes the reference set does "
                                                 "not hold (each is an error)."))
    if len(present) <= MAX_CONFUSION_CLASSES:
        sub = cm[np.ix_(present, present)]
        off = int(cm[present].sum() - sub.sum())
        sec.add(Figure(figs.confusion_matrix(sub, [labels[c] for c in present]),
                       "Confusion matrix on the reference set, among the classes it holds"
                       + (f" ({off} prediction(s) of other classes are listed above)." if off else "."), 9.5))
    by_group = stats.group_accuracy(y, p, [preds.groups[i] for i in known])
    if by_group:
        sec.add(Table(["Attribute", "Group", "Samples", "Accuracy", "95% CI (Wilson)"],
                      [[g.attribute, g.group, g.accuracy.n, fmt(g.accuracy.value),
                        f"{g.accuracy.low:.3f} - {g.accuracy.high:.3f}"] for g in by_group],
                      widths=[0.2, 0.2, 0.15, 0.2, 0.25], caption="Accuracy by group attribute, computed at report time."))
    return acc
