"""Localisation of attribution maps against a declared region: relevance mass accuracy and pointing game.

Pure torch: maps [B, H, W] or [B, C, H, W] and one region per sample in map coordinates: a pixel box, a
boolean mask, or None (or all masks at once as a bool tensor [B, H, W], an all-False row meaning none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from audit.regions import BAD_REGION as BAD_BOX
from audit.regions import as_mask

from .base import QualityMetric, Scores

Box = Sequence[int]

BAD_MASKS = "region masks must be a boolean [B, H, W] tensor matching the maps"
BAD_MAPS = "maps must be a batch [B, H, W] or [B, C, H, W]"
BAD_COUNT = "give one region (or None) per map"
BAD_TOLERANCE = "tolerance must be a finite number of pixels >= 0"
NEEDS_REGIONS = "{label} scores maps against declared regions: pass regions=..."


class _RegionMetric(QualityMetric):
    """Scores maps against one declared region per sample (the ``regions`` keyword); the model is not read."""

    category = "localisation"
    value_range = (0.0, 1.0)
    direction = "higher"
    settings = {"tolerance": 0.0, "absolute": True}
    field_name: str

    def compute(self, model: Any, inputs: Any, targets: Any, maps: torch.Tensor, **data: Any) -> Scores:
        if data.get("regions") is None:
            raise ValueError(NEEDS_REGIONS.format(label=self.label))
        return Scores(getattr(localisation(maps, data["regions"], **self.config), self.field_name), type(self))


class RelevanceMass(_RegionMetric):
    name = "relevance_mass_accuracy"
    listing = 70
    label = "Relevance mass accuracy"
    paper = ("Arras, Osman & Samek (2022). CLEVR-XAI: A benchmark dataset for the ground truth evaluation of "
             "neural network explanations. Information Fusion.")
    description = "share of the map's (absolute) relevance that falls inside the declared region"
    field_name = "relevance_mass"


class PointingGame(_RegionMetric):
    name = "pointing_game"
    listing = 80
    label = "Pointing game"
    paper = ("Zhang, Bargal, Lin, Brandt, Shen & Sclaroff (2018). Top-down Neural Attention by Excitation "
             "Backprop. IJCV.")
    description = "1 when the most relevant pixel lies inside the declared region (within a tolerance), else 0"
    field_name = "pointing_game"


RELEVANCE_MASS, POINTING_GAME = RelevanceMass, PointingGame
LOCALISATION_METRICS: tuple[str, ...] = (RelevanceMass.name, PointingGame.name)  # what `localisation` gives, in order


@dataclass
class LocalisationResult:
    """Per-sample scores (NaN where a sample has no region or no relevance) and their means over the rest."""

    relevance_mass: torch.Tensor  # [B]
    pointing_game: torch.Tensor  # [B]
    tolerance: float
    absolute: bool

    @property
    def relevance_mass_mean(self) -> float:
        return _nanmean(self.relevance_mass)

    @property
    def pointing_game_mean(self) -> float:
        return _nanmean(self.pointing_game)

    def means(self) -> dict[str, float]:
        """Metric name -> mean over the samples with a region, in LOCALISATION_METRICS order."""
        return {RelevanceMass.name: self.relevance_mass_mean, PointingGame.name: self.pointing_game_mean}


def _nanmean(v: torch.Tensor) -> float:
    ok = ~torch.isnan(v)
    return float(v[ok].mean()) if bool(ok.any()) else float("nan")


def _relevance(maps: torch.Tensor, absolute: bool) -> torch.Tensor:
    if maps.ndim == 4:
        maps = maps.sum(dim=1)
    elif maps.ndim != 3:
        raise ValueError(f"{BAD_MAPS}, got shape {tuple(maps.shape)}")
    maps = maps.detach().double()
    return maps.abs() if absolute else maps.clamp(min=0.0)


def _region_masks(regions: Any, n: int, h: int, w: int) -> torch.Tensor:
    """Boxes, masks or None per map (or a bool tensor [B, H, W]) -> bool [B, H, W]; all-False = no region."""
    if isinstance(regions, (torch.Tensor, np.ndarray)) and getattr(regions, "ndim", 0) == 3:
        m = torch.as_tensor(regions)
        if m.dtype != torch.bool or tuple(m.shape) != (n, h, w):
            raise ValueError(f"{BAD_MASKS}: got {tuple(m.shape)} {m.dtype} for {n} maps of {w}x{h}")
        return m
    if len(regions) != n:
        raise ValueError(f"{BAD_COUNT}: {n} maps, {len(regions)} regions")
    out = np.zeros((n, h, w), dtype=bool)
    for i, region in enumerate(regions):
        if region is not None:
            out[i] = as_mask(region, h, w, where=f"sample {i}")
    return torch.from_numpy(out)


def localisation(
    maps: torch.Tensor,
    regions: Any,
    *,
    tolerance: float = 0.0,
    absolute: bool = True,
) -> LocalisationResult:
    """Relevance mass accuracy (Arras et al., 2022) and pointing game (Zhang et al., 2018) per sample.

    Args:
        maps: attributions [B, H, W] or [B, C, H, W]; channels are summed first.
        regions: one region per map in the map's coordinates: a pixel box [x0, y0, x1, y1] (x1, y1
            exclusive), a boolean mask [H, W], or None where the sample declares no region (its scores are
            NaN and left out of the means); or a bool tensor [B, H, W] (`region_masks` gives one, scaled
            from the stored images), where an all-False row means no region.
        tolerance: pointing game only: a maximum within this many pixels (Euclidean, from the pixel
            to the nearest pixel of the region) still counts as a hit; 0 asks for the region itself.
        absolute: True (default) scores |map|, so strong negative evidence counts as relevance;
            False clips negative values to 0 and scores positive relevance only, as Arras et al. do.

    Relevance mass = sum of relevance inside the region / sum over the whole map (NaN for an all-zero
    map). The pointing game takes the first maximum in row-major order (NaN for an all-zero map).
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"{BAD_TOLERANCE}, got {tolerance!r}")
    rel = _relevance(maps, absolute)
    n, h, w = rel.shape
    masks = _region_masks(regions, n, h, w)
    mass = torch.full((n,), float("nan"), dtype=torch.float64)
    point = torch.full((n,), float("nan"), dtype=torch.float64)
    flat_max = rel.flatten(1).argmax(dim=1)
    totals = rel.flatten(1).sum(dim=1)
    for i in range(n):
        m = masks[i]
        if not bool(m.any()) or not totals[i] > 0:
            continue
        mass[i] = rel[i][m].sum() / totals[i]
        r, c = divmod(int(flat_max[i]), w)
        if bool(m[r, c]):
            point[i] = 1.0
            continue
        ys, xs = m.nonzero(as_tuple=True)  # distance to the nearest pixel of the region
        nearest = float(torch.sqrt(((ys - r) ** 2 + (xs - c) ** 2).double()).min())
        point[i] = 1.0 if nearest <= tolerance else 0.0
    return LocalisationResult(mass, point, float(tolerance), absolute)
