"""Stratified percentile bootstrap: each group is resampled with replacement at its own size.

Resampling a group is drawing a multinomial weight vector over its members, so sums are matrix products.
"""

from __future__ import annotations

import warnings

import numpy as np

# Keep weight matrices around a few tens of MB whatever the group size.
_MAX_WEIGHT_CELLS = 4_000_000


def resampled_sums(features: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of `features` [n, m] over `n_boot` bootstrap resamples of its rows -> [n_boot, m].

    Rows that are equal are pooled first: resampling n rows is a multinomial draw over the distinct
    rows with their frequencies, which makes indicator data (confusion counts) cost O(patterns).
    """
    n = features.shape[0]
    patterns, counts = np.unique(features, axis=0, return_counts=True)
    weights = rng.multinomial(n, counts / n, size=n_boot)
    return weights @ patterns


def resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `values` [n] over `n_boot` bootstrap resamples -> [n_boot]."""
    n = values.shape[0]
    out = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _MAX_WEIGHT_CELLS // max(n, 1))
    probs = np.full(n, 1.0 / n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        weights = rng.multinomial(n, probs, size=stop - start)
        out[start:stop] = weights @ values / n
    return out


def percentile_interval(samples: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds of `samples` along `axis`, ignoring NaN replicates."""
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        # A metric undefined in every replicate (e.g. TPR of a group without positives) stays NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        low = np.nanquantile(samples, alpha, axis=axis)
        high = np.nanquantile(samples, 1.0 - alpha, axis=axis)
    return low, high
