"""Performance numbers on a labelled reference set: accuracy with Wilson intervals, the confusion
matrix, per-class recall and precision, and accuracy by group. Pure numpy; the report prints these."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

ERR_LENGTHS = "y_true has {n_true} entries but y_pred has {n_pred}; give one prediction per label"
ERR_GROUP_LENGTHS = "groups has {n_groups} entries but there are {n} predictions; give one per sample"
ERR_COUNTS = "a proportion needs 0 <= k <= n, got k={k}, n={n}"


def wilson_interval(k: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (Wilson 1927): unlike the normal approximation it
    stays inside [0, 1] and is not degenerate at 0 or n. (nan, nan) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(ERR_COUNTS.format(k=k, n=n))
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Accuracy:
    """Correct predictions out of n, with the 95% Wilson interval."""

    correct: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(ERR_LENGTHS.format(n_true=len(y_true), n_pred=len(y_pred)))


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> Accuracy:
    y, p = np.asarray(y_true), np.asarray(y_pred)
    _check(y, p)
    k = int((y == p).sum())
    return Accuracy(k, len(y), *wilson_interval(k, len(y)))


def labelled(labels: Sequence[Optional[int]], predicted: Sequence[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(indices of labelled samples, their labels, their predictions): unlabelled samples drop out."""
    if len(labels) != len(predicted):
        raise ValueError(ERR_LENGTHS.format(n_true=len(labels), n_pred=len(predicted)))
    known = [i for i, y in enumerate(labels) if y is not None]
    pred = np.asarray(predicted)
    return known, np.asarray([labels[i] for i in known], dtype=int), pred[known].astype(int)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """[true, predicted] counts; labels outside 0..n_classes-1 are left out."""
    y, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    _check(y, p)
    cm = np.zeros((n_classes, n_classes), dtype=int)
    ok = (y >= 0) & (y < n_classes) & (p >= 0) & (p < n_classes)
    np.add.at(cm, (y[ok], p[ok]), 1)
    return cm


@dataclass(frozen=True)
class ClassRates:
    label: str
    samples: int
    recall: Optional[float]  # None when the class has no samples
    precision: Optional[float]  # None when the class is never predicted


def per_class_rates(cm: np.ndarray, labels: Sequence[str]) -> list[ClassRates]:
    out = []
    for c, name in enumerate(labels):
        n_c, predicted_c = int(cm[c].sum()), int(cm[:, c].sum())
        out.append(ClassRates(name, n_c, cm[c, c] / n_c if n_c else None,
                              cm[c, c] / predicted_c if predicted_c else None))
    return out


def confusions_outside(cm: np.ndarray, present: Sequence[int], top: int = 5) -> list[tuple[int, int]]:
    """(class, count) of the most frequent predictions of classes outside ``present`` made on samples of
    the ``present`` classes, largest first."""
    keep = set(int(c) for c in present)
    counts = cm[list(keep)].sum(axis=0) if keep else np.zeros(cm.shape[1], dtype=int)
    out = [(int(c), int(n)) for c, n in enumerate(counts) if n > 0 and c not in keep]
    return sorted(out, key=lambda cn: (-cn[1], cn[0]))[:top]


@dataclass(frozen=True)
class GroupAccuracy:
    attribute: str
    group: str
    accuracy: Accuracy


def group_accuracy(y_true: Sequence[int], y_pred: Sequence[int],
                   groups: Sequence[Mapping[str, Any]]) -> list[GroupAccuracy]:
    """Accuracy by value of every group attribute recorded on the samples (values compared as text;
    a sample without the attribute counts in group "None"), sorted by attribute then group."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    _check(y, p)
    if len(groups) != len(y):
        raise ValueError(ERR_GROUP_LENGTHS.format(n_groups=len(groups), n=len(y)))
    out = []
    for attr in sorted({a for g in groups for a in g}):
        values = np.asarray([str(g.get(attr)) for g in groups])
        for v in sorted(set(values.tolist())):
            idx = values == v
            out.append(GroupAccuracy(attr, v, accuracy(y[idx], p[idx])))
    return out
