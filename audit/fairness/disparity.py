"""Explanation disparity: how much of each explanation falls on a region or on identity words, by group.

A model that leans on a watermark or on gendered words shows a larger share there for the affected group.
Regions are declared by the data (one pixel box or mask per sample, see `region_masks`); without any, use the
region-free comparison in `audit.fairness.maps`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from audit.fairness import errors
from audit.fairness._bootstrap import percentile_interval, resampled_means
from audit.fairness._validate import check_groups, group_codes, label_text, to_group_frame
from audit.fairness.metrics import DEFAULT_MIN_GROUP_SIZE
from audit.fairness.terms import identity_terms
from audit.jsonsafe import finite_or_none as _finite
from audit.regions import masks_of

logger = logging.getLogger(__name__)


@dataclass
class ExplanationDisparity:
    """Per-group mean share of |attribution| on the region (image) or identity tokens (text).

    `by_group` columns: mean, ci_low, ci_high (percentile bootstrap of the mean, stratified by group;
    NaN when n_boot = 0), count, small_group. `per_sample` holds each sample's share (NaN where the
    sample was excluded). `baseline` is the share a uniform attribution would give (region area or
    mean fraction of identity tokens): a share well above it means the explanation concentrates there.
    `difference` is the largest minus the smallest group mean; `worst_group` has the largest mean.
    `n_excluded` counts samples without a share: no declared region, or zero attribution everywhere
    (`n_without_region` of them for the first reason).
    """

    kind: Literal["region", "tokens"]
    by_group: pd.DataFrame
    per_sample: np.ndarray
    baseline: float
    difference: float
    difference_ci: tuple[float, float] | None
    worst_group: Any
    n_excluded: int
    small_groups: list[Any]
    n_boot: int
    seed: int
    ci_level: float
    warnings: list[str] = field(default_factory=list)
    n_without_region: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (per-sample shares as a list, NaN -> None)."""
        return {
            "kind": self.kind,
            "by_group": {
                label_text(label): {
                    "mean": _finite(r["mean"]),
                    "ci": [_finite(r["ci_low"]), _finite(r["ci_high"])],
                    "count": int(r["count"]),
                    "small_group": bool(r["small_group"]),
                }
                for label, r in self.by_group.iterrows()
            },
            "per_sample": [_finite(v) for v in self.per_sample.tolist()],
            "baseline": _finite(self.baseline),
            "difference": _finite(self.difference),
            "difference_ci": None if self.difference_ci is None else [_finite(v) for v in self.difference_ci],
            "worst_group": None if self.worst_group is None else label_text(self.worst_group),
            "n_excluded": self.n_excluded,
            "n_without_region": self.n_without_region,
            "small_groups": [label_text(g) for g in self.small_groups],
            "n_boot": self.n_boot,
            "seed": self.seed,
            "ci_level": self.ci_level,
            "warnings": list(self.warnings),
        }


def abs_maps(attributions: Any) -> np.ndarray:
    """|attribution| per pixel as [N, H, W] float64: channels of [N, C, H, W] maps are summed."""
    maps = _to_numpy(attributions).astype(np.float64)
    if maps.ndim == 4:
        return np.abs(maps).sum(axis=1)
    if maps.ndim == 3:
        return np.abs(maps)
    raise ValueError(f"{errors.ATTR_SHAPE}, got {maps.shape}")


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.numpy() if value.dtype == torch.bool else value.double().numpy()
    return np.asarray(value)


def explanation_disparity(
    attributions: Any,
    region_mask: Any,
    groups: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> ExplanationDisparity:
    """Share of |attribution| inside the region, per sample and per group.

    Args:
        attributions: [N, H, W] or [N, C, H, W] (channels are combined as the sum of |values|).
        region_mask: boolean [H, W] shared by every sample, or [N, H, W] with one region per sample
            (see `region_masks`; an all-False row means the sample declares no region).
        groups: one group label per sample, or a frame of several attributes (intersections).
        n_boot, seed, ci_level: stratified percentile bootstrap of each group's mean share.
        min_group_size: smaller groups are flagged.

    Samples without a region, or whose attribution is zero everywhere, have no share; they are
    excluded and counted. `baseline` is the mean area fraction of the regions of the samples used.
    """
    maps = abs_maps(attributions)
    mask = _to_numpy(region_mask)
    if mask.dtype != np.bool_ or mask.shape not in (maps.shape[1:], maps.shape):
        raise ValueError(f"{errors.MASK_SHAPE}: mask {mask.shape} {mask.dtype}, attributions {maps.shape}")
    masks = np.broadcast_to(mask, maps.shape)
    flat, flat_mask = maps.reshape(len(maps), -1), masks.reshape(len(maps), -1)
    total = flat.sum(axis=1)
    inside = (flat * flat_mask).sum(axis=1)
    has_region = flat_mask.any(axis=1)
    usable = has_region & (total > 0)
    share = np.full(len(maps), np.nan)
    np.divide(inside, total, out=share, where=usable)
    area = flat_mask.mean(axis=1)
    baseline = float(area[usable].mean()) if usable.any() else math.nan
    no_region = int((~has_region).sum())
    zero = int((has_region & (total <= 0)).sum())
    notes = []
    if no_region:
        notes.append(f"{no_region} sample(s) declare no region and were excluded")
    if zero:
        notes.append(f"{zero} sample(s) have zero attribution everywhere and were excluded")
    res = _summarise("region", share, groups, baseline, n_boot, seed, ci_level, min_group_size, notes)
    res.n_without_region = no_region
    return res


def region_masks(
    regions: Sequence[Any],
    *,
    image_size: tuple[int, int],
    map_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Boolean masks [N, H, W] of declared regions, scaled from the stored image to the map size.

    Args:
        regions: one region per sample in the stored image's pixels: a box [x0, y0, x1, y1] (x1, y1
            exclusive), a boolean mask [height, width], or None where the sample declares no region (its
            mask row is all False).
        image_size: (height, width) of the stored images the regions refer to.
        map_size: (height, width) of the attribution maps (the model's input size); default image_size.

    The model sees the image resized to its input size, so a region scales with it: a map pixel belongs
    to the region when the region touches it (`audit.regions.scale_mask`; for a box, edges rounded
    outwards). Explanation disparity and localisation both score these masks.
    """
    return torch.from_numpy(masks_of(list(regions), image_size=image_size, map_size=map_size))


def text_explanation_disparity(
    token_scores: Sequence[Any],
    identity_masks: Sequence[Any],
    groups: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> ExplanationDisparity:
    """Share of |attribution| on identity tokens, per text and per group.

    Args:
        token_scores: one 1-D score array per text (e.g. `TokenAttribution.scores[method]`).
        identity_masks: one boolean array per text, True on identity tokens (see `identity_token_mask`).
        groups: one group label per text, or a frame of several attributes.

    Texts without identity tokens, or with zero attribution, are excluded and counted.
    """
    if len(token_scores) != len(identity_masks):
        raise ValueError(f"{errors.TOKEN_MASK_MISMATCH}: {len(token_scores)} score arrays, {len(identity_masks)} masks")
    share = np.full(len(token_scores), np.nan)
    fractions = []
    no_terms = 0
    for i, (scores, mask) in enumerate(zip(token_scores, identity_masks)):
        s = np.abs(_to_numpy(scores).astype(np.float64).reshape(-1))
        m = _to_numpy(mask).astype(bool).reshape(-1)
        if s.shape != m.shape:
            raise ValueError(f"{errors.TOKEN_MASK_MISMATCH}: text {i} has {s.size} scores and {m.size} mask entries")
        if not m.any():
            no_terms += 1
            continue
        if s.sum() > 0:
            share[i] = s[m].sum() / s.sum()
            fractions.append(m.mean())
    notes = [f"{no_terms} text(s) contain no identity token and were excluded"] if no_terms else []
    baseline = float(np.mean(fractions)) if fractions else math.nan
    return _summarise("tokens", share, groups, baseline, n_boot, seed, ci_level, min_group_size, notes)


def identity_token_mask(tokens: Sequence[str], terms: set[str] | frozenset[str] | None = None) -> np.ndarray:
    """True on tokens that belong to an identity word (all pieces of a split word are marked).

    Understands WordPiece continuations ("##...") and, when tokens carry SentencePiece / byte-BPE
    word-start marks ("▁", "Ġ"), that scheme instead. `terms` defaults to every word of the probe's
    default swap and name lists.
    """
    vocab = {t.lower() for t in (terms if terms is not None else identity_terms())}
    marked = any(t.startswith(("▁", "Ġ")) for t in tokens)
    words: list[list[int]] = []
    pieces: list[str] = []
    for i, tok in enumerate(tokens):
        if marked:
            new_word = tok.startswith(("▁", "Ġ")) or (tok.startswith("<") and tok.endswith(">"))
            piece = tok.lstrip("▁Ġ")
        else:
            new_word = not tok.startswith("##")
            piece = tok.removeprefix("##")
        if new_word or not words:
            words.append([i])
            pieces.append(piece)
        else:
            words[-1].append(i)
            pieces[-1] += piece
    mask = np.zeros(len(tokens), dtype=bool)
    for idx, word in zip(words, pieces):
        if word.lower() in vocab:
            mask[idx] = True
    return mask


def _summarise(
    kind: Literal["region", "tokens"],
    share: np.ndarray,
    groups: Any,
    baseline: float,
    n_boot: int,
    seed: int,
    ci_level: float,
    min_group_size: int,
    notes: list[str],
) -> ExplanationDisparity:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"{errors.BAD_N_BOOT}, got {n_boot!r}")
    if not 0.0 < float(ci_level) < 1.0:
        raise ValueError(f"{errors.BAD_CI_LEVEL}, got {ci_level!r}")
    frame = to_group_frame(groups)
    if len(frame) != len(share):
        raise ValueError(f"{errors.GROUP_COUNT_MISMATCH}: {len(share)} samples, {len(frame)} group labels")
    if len(share) == 0:
        raise ValueError(errors.EMPTY_INPUT)
    check_groups(frame)
    codes, labels = group_codes(frame)
    excluded = int(np.isnan(share).sum())
    rng = np.random.default_rng(seed)
    rows, replicates = [], []
    for g in range(len(labels)):
        values = share[codes == g]
        values = values[~np.isnan(values)]
        if len(values) == 0:
            rows.append((np.nan, np.nan, np.nan, 0))
            replicates.append(np.full(max(n_boot, 1), np.nan))
            continue
        mean = float(values.mean())
        if n_boot > 0:
            boot = resampled_means(values, n_boot, rng)
            low, high = percentile_interval(boot, ci_level)
            replicates.append(boot)
            rows.append((mean, float(low), float(high), len(values)))
        else:
            rows.append((mean, np.nan, np.nan, len(values)))
    index = (pd.MultiIndex.from_tuples(labels, names=list(frame.columns)) if frame.shape[1] > 1
             else pd.Index(labels, name=frame.columns[0]))
    by_group = pd.DataFrame(rows, index=index, columns=["mean", "ci_low", "ci_high", "count"])
    by_group["count"] = by_group["count"].astype(np.int64)
    by_group["small_group"] = by_group["count"] < min_group_size
    small = [g for g, flag in zip(by_group.index, by_group["small_group"]) if flag]
    if small:
        notes.append(
            f"{len(small)} group(s) have fewer than {min_group_size} usable samples: "
            + ", ".join(f"{label_text(g)} (n={int(by_group.loc[g, 'count'])})" for g in small[:10])
        )
    means = by_group["mean"].to_numpy(dtype=float)
    finite = ~np.isnan(means)
    difference = float(means[finite].max() - means[finite].min()) if finite.any() else math.nan
    worst = by_group.index[int(np.nanargmax(means))] if finite.any() else None
    difference_ci = None
    if n_boot > 0 and finite.sum() >= 2:
        stacked = np.stack([r for r, ok in zip(replicates, finite) if ok], axis=0)
        gap = stacked.max(axis=0) - stacked.min(axis=0)
        low, high = percentile_interval(gap, ci_level)
        difference_ci = (float(low), float(high))
    for note in notes:
        logger.warning(note)
    return ExplanationDisparity(
        kind=kind, by_group=by_group, per_sample=share, baseline=baseline, difference=difference,
        difference_ci=difference_ci, worst_group=worst, n_excluded=excluded, small_groups=small,
        n_boot=int(n_boot), seed=seed, ci_level=float(ci_level), warnings=notes,
    )
