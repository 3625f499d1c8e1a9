"""Per-sample similarity between two versions' attribution maps of the same inputs and targets.

Spearman rank correlation, top-k% overlap (intersection and IoU) and SSIM on display-normalised maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from audit.attribution.display import normalize_for_display
from audit.attribution.stats import spearman

ArrayLike = Union[torch.Tensor, np.ndarray]
Maps = Union[ArrayLike, Sequence[ArrayLike]]

ERR_COUNT = "base and new hold maps for {nb} and {nn} samples; both versions must explain the same samples"
ERR_NDIM = ("a batch of maps must be [N, C, H, W] (input space), [N, H, W] (spatial) or [N, L] (tokens); "
            "got shape {shape}")
ERR_LENGTH = ("sample {index}: the base map has {nb} values and the new one {nn}; token maps can only be "
              "compared when both versions tokenise the text the same way")
ERR_TOPK = "top_k must be a fraction in (0, 1], got {value}"


@dataclass
class MapSimilarity:
    """One value per sample (NaN where a measure does not apply, e.g. SSIM on token maps)."""

    rank_correlation: np.ndarray
    topk_intersection: np.ndarray  # |top-k(base) ∩ top-k(new)| / k
    topk_iou: np.ndarray  # |∩| / |∪|
    ssim: np.ndarray
    top_k: float

    def __len__(self) -> int:
        return int(self.rank_correlation.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"rank_correlation": self.rank_correlation, "topk_intersection": self.topk_intersection,
                "topk_iou": self.topk_iou, "ssim": self.ssim}


def relevance(maps: ArrayLike) -> torch.Tensor:
    """Raw maps -> per-position relevance magnitude: |a| summed over channels for [N, C, H, W]
    (the display reduction), |a| for [N, H, W] and [N, L]. Rank and top-k measures use this."""
    a = torch.as_tensor(np.asarray(maps) if isinstance(maps, np.ndarray) else maps).detach().float().cpu()
    if a.ndim == 4:
        return a.abs().sum(1)
    if a.ndim in (2, 3):
        return a.abs()
    raise ValueError(ERR_NDIM.format(shape=tuple(a.shape)))


def _as_batches(base: Maps, new: Maps) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pair the samples' relevance maps; a sequence allows per-sample sizes (texts differ in length)."""
    if isinstance(base, (torch.Tensor, np.ndarray)) and isinstance(new, (torch.Tensor, np.ndarray)):
        rb, rn = relevance(base), relevance(new)
        if rb.shape[0] != rn.shape[0]:
            raise ValueError(ERR_COUNT.format(nb=rb.shape[0], nn=rn.shape[0]))
        return [(rb[i], rn[i]) for i in range(rb.shape[0])]
    base_list, new_list = list(base), list(new)
    if len(base_list) != len(new_list):
        raise ValueError(ERR_COUNT.format(nb=len(base_list), nn=len(new_list)))
    pairs = []
    for b, n in zip(base_list, new_list):
        tb = torch.as_tensor(np.asarray(b)).unsqueeze(0)
        tn = torch.as_tensor(np.asarray(n)).unsqueeze(0)
        pairs.append((relevance(tb)[0], relevance(tn)[0]))
    return pairs


def _match_size(b: torch.Tensor, n: torch.Tensor, index: int) -> torch.Tensor:
    """Bring the new map to the base map's size: spatial maps are resized bilinearly (versions of a
    family may change the input size), token maps must already agree."""
    if b.shape == n.shape:
        return n
    if b.ndim == 2 and n.ndim == 2:
        return F.interpolate(n[None, None], size=tuple(b.shape), mode="bilinear", align_corners=False)[0, 0]
    raise ValueError(ERR_LENGTH.format(index=index, nb=b.numel(), nn=n.numel()))


def rank_correlation(b: torch.Tensor, n: torch.Tensor) -> float:
    """Spearman correlation of two maps (average ranks for ties). Two constant maps count as the same
    ordering (1.0 if equal, else 0.0); one constant map against a varying one is 0.0."""
    fb, fn = b.reshape(1, -1).double(), n.reshape(1, -1).double()
    const_b = bool((fb == fb[0, 0]).all())
    const_n = bool((fn == fn[0, 0]).all())
    if const_b or const_n:
        return 1.0 if (const_b and const_n and torch.equal(fb, fn)) else 0.0
    return float(spearman(fb, fn)[0])


def _topk_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    # A stable sort makes tied positions resolve the same way for equal maps, so identical maps overlap fully.
    order = torch.argsort(flat.double(), descending=True, stable=True)[:k]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order] = True
    return mask


def topk_overlap(b: torch.Tensor, n: torch.Tensor, top_k: float) -> tuple[float, float]:
    """(intersection fraction, IoU) of the ``top_k`` fraction of most relevant positions."""
    fb, fn = b.reshape(-1), n.reshape(-1)
    k = max(1, math.ceil(top_k * fb.numel()))
    inter = int((_topk_mask(fb, k) & _topk_mask(fn, k)).sum())
    return inter / k, inter / (2 * k - inter)


def ssim(b: torch.Tensor, n: torch.Tensor) -> float:
    """Structural similarity of two 2-D maps after the shared display normalisation (both in [0, 1]);
    NaN for token maps or maps smaller than 3x3."""
    from skimage.metrics import structural_similarity

    if b.ndim != 2 or min(b.shape) < 3:
        return float("nan")
    db = normalize_for_display(b.unsqueeze(0), mode="abs")[0].double().numpy()
    dn = normalize_for_display(n.unsqueeze(0), mode="abs")[0].double().numpy()
    win = min(7, min(b.shape))
    win = win if win % 2 == 1 else win - 1
    return float(structural_similarity(db, dn, data_range=1.0, win_size=win))


def compare_maps(base: Maps, new: Maps, *, top_k: float = 0.1) -> MapSimilarity:
    """Similarity of each sample's base and new map (same sample, same target, same method).

    ``base``/``new``: batches [N, C, H, W], [N, H, W] or [N, L], or sequences of per-sample maps
    (token maps of different lengths). Signs are ignored: the measures compare where relevance lies.
    """
    if not 0.0 < top_k <= 1.0:
        raise ValueError(ERR_TOPK.format(value=top_k))
    pairs = _as_batches(base, new)
    rc, inter, iou, ss = [], [], [], []
    for i, (b, n) in enumerate(pairs):
        n = _match_size(b, n, i)
        rc.append(rank_correlation(b, n))
        a, u = topk_overlap(b, n, top_k)
        inter.append(a)
        iou.append(u)
        ss.append(ssim(b, n))
    as_np = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    return MapSimilarity(as_np(rc), as_np(inter), as_np(iou), as_np(ss), top_k)
