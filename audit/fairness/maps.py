"""Region-free explanation disparity: do the groups' explanations look at the same places?

Used when the data declares no region: each group's mean normalised |attribution| map is compared with
every other group's, by total-variation distance and rank correlation, against a permutation null.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from audit.fairness import errors
from audit.fairness._validate import check_groups, group_codes, label_text, to_group_frame
from audit.fairness.disparity import abs_maps
from audit.fairness.metrics import DEFAULT_MIN_GROUP_SIZE
from audit.jsonsafe import finite_or_none as _finite

logger = logging.getLogger(__name__)


@dataclass
class MapDisparity:
    """How far apart the groups' mean explanation maps are, with no region needed.

    Each sample's |attribution| (channels summed) is divided by its total, so it is a distribution
    over pixels; a group's mean map is the mean of those. `pairs` has one row per pair of groups:
    `total_variation` = 0.5 * sum |p - q| (0: the same map, 1: disjoint) and `rank_correlation`
    (Spearman over pixels). `difference` is the largest total variation and `most_different` its pair.
    `null_difference` is the mean largest total variation over `n_perm` random relabellings of the
    samples (group sizes kept): the gap chance alone gives. `p_value` is the fraction of relabellings
    (plus one) whose largest total variation reaches the observed one.
    """

    by_group: pd.DataFrame  # count, small_group
    mean_maps: dict[Any, np.ndarray]
    pairs: pd.DataFrame  # group_a, group_b, total_variation, rank_correlation
    difference: float
    min_rank_correlation: float
    most_different: tuple[Any, Any] | None
    null_difference: float
    p_value: float
    n_excluded: int
    small_groups: list[Any]
    n_perm: int
    seed: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_group": {label_text(g): {"count": int(r["count"]), "small_group": bool(r["small_group"])}
                         for g, r in self.by_group.iterrows()},
            "pairs": [{"groups": [label_text(r["group_a"]), label_text(r["group_b"])],
                       "total_variation": _finite(r["total_variation"]),
                       "rank_correlation": _finite(r["rank_correlation"])} for _, r in self.pairs.iterrows()],
            "difference": _finite(self.difference),
            "min_rank_correlation": _finite(self.min_rank_correlation),
            "most_different": None if self.most_different is None else [label_text(g) for g in self.most_different],
            "null_difference": _finite(self.null_difference),
            "p_value": _finite(self.p_value),
            "n_excluded": self.n_excluded,
            "small_groups": [label_text(g) for g in self.small_groups],
            "n_perm": self.n_perm,
            "seed": self.seed,
            "warnings": list(self.warnings),
        }


def map_disparity(
    attributions: Any,
    groups: Any,
    *,
    n_perm: int = 200,
    seed: int = 0,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> MapDisparity:
    """Compare the groups' mean normalised |attribution| maps (see `MapDisparity`).

    Args:
        attributions: [N, H, W] or [N, C, H, W].
        groups: one group label per sample, or a frame of several attributes (intersections).
        n_perm: random relabellings for the null (0: none; `null_difference` and `p_value` are NaN).
        min_group_size: smaller groups are flagged.

    Samples whose attribution is zero everywhere (or not finite) have no distribution; they are
    excluded and counted.
    """
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 0:
        raise ValueError(f"{errors.BAD_N_PERM}, got {n_perm!r}")
    maps = abs_maps(attributions)
    frame = to_group_frame(groups)
    if len(frame) != len(maps):
        raise ValueError(f"{errors.GROUP_COUNT_MISMATCH}: {len(maps)} samples, {len(frame)} group labels")
    if len(maps) == 0:
        raise ValueError(errors.EMPTY_INPUT)
    check_groups(frame)
    flat = maps.reshape(len(maps), -1)
    total = flat.sum(axis=1)
    usable = np.isfinite(flat).all(axis=1) & (total > 0)
    notes = []
    excluded = int((~usable).sum())
    if excluded:
        notes.append(f"{excluded} sample(s) have zero attribution everywhere and were excluded")
    dist = np.zeros_like(flat)
    dist[usable] = flat[usable] / total[usable, None]
    codes, labels = group_codes(frame)
    codes = np.where(usable, codes, -1)
    counts = np.array([(codes == g).sum() for g in range(len(labels))])
    present = [g for g in range(len(labels)) if counts[g] > 0]
    if len(present) < 2:
        raise ValueError(f"{errors.TOO_FEW_GROUPS}: {len(present)} group(s) have one")
    means = _group_means(dist, codes, len(labels))
    rows = []
    for a, b in combinations(present, 2):
        rows.append((labels[a], labels[b], _tv(means[a], means[b]), _spearman(means[a], means[b])))
    pairs = pd.DataFrame(rows, columns=["group_a", "group_b", "total_variation", "rank_correlation"])
    best = int(pairs["total_variation"].to_numpy().argmax())
    difference = float(pairs["total_variation"].iloc[best])

    null, p_value = math.nan, math.nan
    if n_perm > 0:
        rng = np.random.default_rng(seed)
        kept = codes[codes >= 0]
        rows_kept = dist[codes >= 0]
        reached = 0
        gaps = np.empty(n_perm)
        for i in range(n_perm):
            shuffled = rng.permutation(kept)
            m = _group_means(rows_kept, shuffled, len(labels))
            gaps[i] = max(_tv(m[a], m[b]) for a, b in combinations(present, 2))
            reached += gaps[i] >= difference - 1e-12
        null = float(gaps.mean())
        p_value = (reached + 1) / (n_perm + 1)

    index = (pd.MultiIndex.from_tuples(labels, names=list(frame.columns)) if frame.shape[1] > 1
             else pd.Index(labels, name=frame.columns[0]))
    by_group = pd.DataFrame({"count": counts.astype(np.int64)}, index=index)
    by_group["small_group"] = by_group["count"] < min_group_size
    small = [g for g, flag in zip(by_group.index, by_group["small_group"]) if flag]
    if small:
        notes.append(f"{len(small)} group(s) have fewer than {min_group_size} usable samples: "
                     + ", ".join(f"{label_text(g)} (n={int(by_group.loc[g, 'count'])})" for g in small[:10]))
    for note in notes:
        logger.warning(note)
    return MapDisparity(
        by_group=by_group, mean_maps={labels[g]: means[g].reshape(maps.shape[1:]) for g in present}, pairs=pairs,
        difference=difference, min_rank_correlation=float(pairs["rank_correlation"].min()),
        most_different=(pairs["group_a"].iloc[best], pairs["group_b"].iloc[best]), null_difference=null,
        p_value=p_value, n_excluded=excluded, small_groups=small, n_perm=int(n_perm), seed=seed, warnings=notes,
    )


def _group_means(dist: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean row of each group code (codes < 0 are left out) -> [n_groups, pixels] (NaN rows if empty)."""
    onehot = (codes[None, :] == np.arange(n_groups)[:, None]).astype(np.float64)
    counts = onehot.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (onehot @ dist) / counts


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def _spearman(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.stats import rankdata

    a, b = rankdata(p), rankdata(q)  # average ranks for ties
    if a.std() == 0 or b.std() == 0:
        return math.nan  # a constant mean map has no ranking (see audit.quality.sanity)
    return float(np.corrcoef(a, b)[0, 1])
