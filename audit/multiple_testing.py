"""Family-wise corrections of p-values (Holm, Bonferroni): their names, the check of a name, and the one
function that applies them. Every analysis that tests several hypotheses at once corrects through here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence, get_args

if TYPE_CHECKING:
    import numpy as np

Correction = Literal["holm", "bonferroni"]
CORRECTIONS: tuple[str, ...] = get_args(Correction)
DEFAULT_CORRECTION: Correction = "holm"
ERR_CORRECTION = "correction must be 'holm' or 'bonferroni', got {value!r}"


def check_correction(value: object) -> Correction:
    """``value`` when it names a correction, else ValueError(ERR_CORRECTION)."""
    if value not in CORRECTIONS:
        raise ValueError(ERR_CORRECTION.format(value=value))
    return value  # type: ignore[return-value]


def correct_pvalues(p_values: Sequence[float], correction: Correction = DEFAULT_CORRECTION) -> "np.ndarray":
    """Family-wise corrected p-values, in the order given.

    Bonferroni: ``min(1, m * p)``. Holm (1979) step-down: with p sorted ascending,
    ``p_adj(k) = min(1, max_{j <= k} (m - j + 1) * p(j))`` (1-based), which is uniformly more
    powerful than Bonferroni at the same family-wise error rate.
    """
    import numpy as np  # deferred: the CLI reads CORRECTIONS when it starts, before any numbers

    check_correction(correction)
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
