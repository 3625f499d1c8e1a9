"""Multiple-testing corrections and significance tests against hand-computed and independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from audit.concepts import correct_pvalues, significance, two_sided_ttest
from audit.concepts.stats import ERR_CORRECTION, pseudo_concept_test


def holm_by_procedure(p_values: list[float]) -> np.ndarray:
    """Oracle from the definition: the adjusted p-value of a hypothesis is the smallest level at
    which Holm's step-down procedure (reject p_(k) <= a / (m - k + 1) until the first failure)
    rejects it."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = sorted({min(1.0, (m - k) * p_values[order[k]]) for k in range(m)} | {1.0})
    adjusted = np.ones(m)
    for i in range(m):
        for level in levels:
            rejected = set()
            for k, idx in enumerate(order):
                if p_values[idx] * (m - k) <= level * (1 + 1e-12):  # rounding-safe p <= level / (m - k)
                    rejected.add(idx)
                else:
                    break
            if i in rejected:
                adjusted[i] = level
                break
    return adjusted


def test_bonferroni_is_m_times_p_capped_at_one():
    p = [0.001, 0.02, 0.3, 0.6]
    np.testing.assert_allclose(correct_pvalues(p, "bonferroni"), [0.004, 0.08, 1.0, 1.0])


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(correct_pvalues([0.01, 0.04, 0.03, 0.005], "holm"), [0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("seed", range(20))
def test_holm_matches_the_step_down_procedure(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 9))
    p = list(np.round(rng.uniform(0, 0.2, m) ** 2, 4))  # rounding makes ties likely
    holm = correct_pvalues(p, "holm")
    np.testing.assert_allclose(holm, holm_by_procedure(p), atol=1e-12)
    assert np.all(holm >= np.asarray(p) - 1e-15)
    assert np.all(holm <= correct_pvalues(p, "bonferroni") + 1e-15)


def test_borderline_significant_raw_but_not_after_correction():
    for correction in ("holm", "bonferroni"):
        corrected, decisions = significance([0.03, 0.2], alpha=0.05, correction=correction)
        assert corrected[0] == pytest.approx(0.06)
        assert not decisions[0]
    corrected, decisions = significance([0.01, 0.2], alpha=0.05)
    assert decisions.tolist() == [True, False]


def test_bad_correction_and_alpha_are_rejected():
    with pytest.raises(ValueError) as err:
        correct_pvalues([0.1], "fdr")
    assert str(err.value) == ERR_CORRECTION.format(value="fdr")
    with pytest.raises(ValueError, match="alpha"):
        significance([0.1], alpha=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        correct_pvalues([1.5])


def test_two_sided_ttest_matches_scipy_and_handles_constant_samples():
    a, b = [0.9, 1.0, 0.95, 0.97], [0.4, 0.6, 0.5, 0.55, 0.3]
    t, p = two_sided_ttest(a, b)
    ref = stats.ttest_ind(a, b)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert two_sided_ttest([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        two_sided_ttest([0.5], [0.1, 0.2])


def test_pseudo_concept_test_is_a_prediction_t_test():
    means = [0.3, 0.5, 0.45, 0.6, 0.55]
    t, p = pseudo_concept_test([0.9, 1.0], means)
    expected_t = (0.95 - np.mean(means)) / (np.std(means, ddof=1) * np.sqrt(1 + 1 / 5))
    assert t == pytest.approx(expected_t)
    assert p == pytest.approx(2 * stats.t.sf(abs(expected_t), 4))
    assert pseudo_concept_test([0.48], means)[1] > 0.5
