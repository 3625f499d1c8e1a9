"""Localisation of attribution maps against a declared region: relevance mass accuracy and pointing game.

Pure torch: maps [B, H, W] or [B, C, H, W] and one pixel box (or None) per sample, in map coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence

import torch

from .spec import MetricSpec

Box = Sequence[int]

BAD_BOX = "a region must be a pixel box [x0, y0, x1, y1] with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height"
BAD_MAPS = "maps must be a batch [B, H, W] or [B, C, H, W]"
BAD_COUNT = "give one box (or None) per map"
BAD_TOLERANCE = "tolerance must be a finite number of pixels >= 0"

# "localisation" is not yet one of spec.Category's literals; the spec is data all the same.
RELEVANCE_MASS = MetricSpec(
    "relevance_mass_accuracy", "higher", "localisation", (0.0, 1.0),
    "share of the map's (absolute) relevance that falls inside the declared region",
)
POINTING_GAME = MetricSpec(
    "pointing_game", "higher", "localisation", (0.0, 1.0),
    "1 when the most relevant pixel lies inside the declared region (within a tolerance), else 0",
)


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


def _check_boxes(boxes: Sequence[Box | None], n: int, h: int, w: int) -> list[tuple[int, int, int, int] | None]:
    if len(boxes) != n:
        raise ValueError(f"{BAD_COUNT}: {n} maps, {len(boxes)} boxes")
    out: list[tuple[int, int, int, int] | None] = []
    for i, box in enumerate(boxes):
        if box is None:
            out.append(None)
            continue
        if len(box) != 4:
            raise ValueError(f"{BAD_BOX}: sample {i} has {box!r}")
        x0, y0, x1, y1 = (int(v) for v in box)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"{BAD_BOX}: sample {i} has {list(box)} on a {w}x{h} map")
        out.append((x0, y0, x1, y1))
    return out


def localisation(
    maps: torch.Tensor,
    boxes: Sequence[Box | None],
    *,
    tolerance: float = 0.0,
    absolute: bool = True,
) -> LocalisationResult:
    """Relevance mass accuracy (Arras et al., 2022) and pointing game (Zhang et al., 2018) per sample.

    Args:
        maps: attributions [B, H, W] or [B, C, H, W]; channels are summed first.
        boxes: one pixel box [x0, y0, x1, y1] per map (x1, y1 exclusive) in the map's coordinates,
            or None where the sample declares no region (its scores are NaN and left out of the means).
        tolerance: pointing game only: a maximum within this many pixels (Euclidean, from the pixel
            to the nearest pixel of the box) still counts as a hit; 0 asks for the box itself.
        absolute: True (default) scores |map|, so strong negative evidence counts as relevance;
            False clips negative values to 0 and scores positive relevance only, as Arras et al. do.

    Relevance mass = sum of relevance inside the box / sum over the whole map (NaN for an all-zero
    map). The pointing game takes the first maximum in row-major order (NaN for an all-zero map).
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"{BAD_TOLERANCE}, got {tolerance!r}")
    rel = _relevance(maps, absolute)
    n, h, w = rel.shape
    checked = _check_boxes(boxes, n, h, w)
    mass = torch.full((n,), float("nan"), dtype=torch.float64)
    point = torch.full((n,), float("nan"), dtype=torch.float64)
    flat_max = rel.flatten(1).argmax(dim=1)
    totals = rel.flatten(1).sum(dim=1)
    for i, box in enumerate(checked):
        if box is None or not totals[i] > 0:
            continue
        x0, y0, x1, y1 = box
        mass[i] = rel[i, y0:y1, x0:x1].sum() / totals[i]
        r, c = divmod(int(flat_max[i]), w)
        dy = max(y0 - r, 0, r - (y1 - 1))
        dx = max(x0 - c, 0, c - (x1 - 1))
        point[i] = 1.0 if math.hypot(dx, dy) <= tolerance else 0.0
    return LocalisationResult(mass, point, float(tolerance), absolute)
