"""Significance for TCAV: the two-sided t-test against random-vs-random scores, the pseudo-concept test, and
the decision after correcting (``audit.multiple_testing``: Holm, Bonferroni) over every concept x layer tested."""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np

# The corrections live in audit.multiple_testing (one function for every analysis); re-exported here.
from audit.multiple_testing import (  # noqa: F401
    CORRECTIONS,
    DEFAULT_CORRECTION,
    ERR_CORRECTION,
    Correction,
    check_correction,
    correct_pvalues,
)

SignificanceTest = Literal["ttest", "pseudo_concept"]
TESTS: tuple[str, ...] = ("ttest", "pseudo_concept")

ERR_ALPHA = "alpha must lie strictly between 0 and 1, got {value!r}"


def significance(
    p_values: Sequence[float], *, alpha: float = 0.05, correction: Correction = DEFAULT_CORRECTION
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
