"""Significance for TCAV: the two-sided t-test against random-vs-random scores and the
multiple-testing corrections (Holm, Bonferroni) applied over every concept x layer tested."""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np

Correction = Literal["holm", "bonferroni"]
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni")
SignificanceTest = Literal["ttest", "pseudo_concept"]
TESTS: tuple[str, ...] = ("ttest", "pseudo_concept")

ERR_CORRECTION = "correction must be 'holm' or 'bonferroni', got {value!r}"
ERR_ALPHA = "alpha must lie strictly between 0 and 1, got {value!r}"


def correct_pvalues(p_values: Sequence[float], correction: Correction = "holm") -> np.ndarray:
    """Family-wise corrected p-values, in the order given.

    Bonferroni: ``min(1, m * p)``. Holm (1979) step-down: with p sorted ascending,
    ``p_adj(k) = min(1, max_{j <= k} (m - j + 1) * p(j))`` (1-based), which is uniformly more
    powerful than Bonferroni at the same family-wise error rate.
    """
    if correction not in CORRECTIONS:
        raise ValueError(ERR_CORRECTION.format(value=correction))
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p_values must be a flat sequence of numbers")
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p_values must lie in [0, 1] (no NaN)")
    m = p.size
    if m == 0:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(1.0, m * p)
    order = np.argsort(p, kind="stable")
    stepped = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(stepped))
    adjusted = np.empty_like(p)
    adjusted[order] = adjusted_sorted
    return adjusted


def significance(
    p_values: Sequence[float], *, alpha: float = 0.05, correction: Correction = "holm"
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected p-values and the decisions ``corrected < alpha`` for one family of tests."""
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(ERR_ALPHA.format(value=alpha))
    corrected = correct_pvalues(p_values, correction)
    return corrected, corrected < alpha


def two_sided_ttest(scores: Sequence[float], null_scores: Sequence[float]) -> tuple[float, float]:
    """Student's two-sample t-test (two-sided) of concept scores against random-vs-random scores.

    Returns (t statistic, p-value). When both samples are constant the test is degenerate: equal
    constants are no evidence of a difference (p = 1), different ones are certain (p = 0).
    """
    from scipy.stats import ttest_ind

    a = np.asarray(scores, dtype=np.float64)
    b = np.asarray(null_scores, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("the t-test needs at least 2 concept runs and 2 random runs")
    if np.ptp(a) == 0.0 and np.ptp(b) == 0.0:
        # zero variance on both sides: scipy would warn and return NaN or an infinite t
        diff = float(a[0] - b[0])
        return (0.0, 1.0) if diff == 0.0 else (float(np.sign(diff)) * np.inf, 0.0)
    with warnings.catch_warnings():
        # one constant side (e.g. every concept run scores 1.0) is fine with a pooled variance
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        t, p = ttest_ind(a, b)
    return float(t), float(p)


def pseudo_concept_test(scores: Sequence[float], pseudo_concept_means: Sequence[float]) -> tuple[float, float]:
    """Is the concept's mean score an outlier among random pseudo-concepts? (two-sided)

    ``pseudo_concept_means`` holds, for each random set used as a pseudo-concept, its mean score
    against the other random sets. The concept's mean is compared with them as one new draw:
    t = (mean(scores) - mean(M)) / (sd(M) * sqrt(1 + 1/R)), with R - 1 degrees of freedom. The
    concept set itself is the unit of replication here, so a concept set's own sampling quirks
    (shared by all of its runs) are not mistaken for an effect, unlike the run-level t-test.
    """
    from scipy.stats import t as student_t

    a = np.asarray(scores, dtype=np.float64)
    m = np.asarray(pseudo_concept_means, dtype=np.float64)
    if a.size < 1 or m.size < 3:
        raise ValueError("the pseudo-concept test needs concept scores and at least 3 pseudo-concepts")
    diff = float(a.mean() - m.mean())
    sd = float(m.std(ddof=1))
    if sd == 0.0:
        return (0.0, 1.0) if diff == 0.0 else (float(np.sign(diff)) * np.inf, 0.0)
    t = diff / (sd * np.sqrt(1.0 + 1.0 / m.size))
    return float(t), float(min(1.0, 2.0 * student_t.sf(abs(t), m.size - 1)))
