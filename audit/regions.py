"""Regions a reference set declares per sample: a pixel box [x0, y0, x1, y1] or a binary mask [H, W].

A box is a special case of a mask; every consumer (import resizing, explanation disparity, localisation)
turns regions into masks here and scales them with one rule: a pixel of the scaled image belongs to the
region when the region touches it (edges rounded outwards), so a region never shrinks away.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

Box = list[int]
Region = Union[Box, np.ndarray]  # a box in stored-image pixels, or a boolean mask at the stored image's size

BAD_REGION = "a region must be a pixel box [x0, y0, x1, y1] with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height"
BAD_MASK = "a region mask must be a 2-D [H, W] array of the stored image's size with at least one nonzero pixel"


def is_mask(region: Any) -> bool:
    """True for a 2-D array (a mask), False for a box or None."""
    return region is not None and hasattr(region, "ndim") and getattr(region, "ndim") == 2


def box_mask(box: Sequence[Any], height: int, width: int, *, where: str = "region") -> np.ndarray:
    """The boolean [height, width] mask of one box (x1, y1 exclusive); ValueError when it is not inside."""
    if len(box) != 4:
        raise ValueError(f"{BAD_REGION}: {where} has {list(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"{BAD_REGION}: {where} has {list(box)} on a {width}x{height} image")
    out = np.zeros((height, width), dtype=bool)
    out[math.floor(y0):math.ceil(y1), math.floor(x0):math.ceil(x1)] = True
    return out


def as_mask(region: Region, height: int, width: int, *, where: str = "region") -> np.ndarray:
    """A box or a mask -> a boolean mask [height, width] in the same (stored-image) pixels."""
    if is_mask(region):
        arr = np.asarray(region.detach().cpu() if hasattr(region, "detach") else region)
        if arr.shape != (height, width) or not arr.any():
            raise ValueError(f"{BAD_MASK}: {where} is {arr.shape[1]}x{arr.shape[0]} with {int(np.count_nonzero(arr))} "
                             f"nonzero pixel(s) for a {width}x{height} image")
        return arr != 0
    return box_mask(region, height, width, where=where)


def _touching(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: output pixel r touches input pixel i when their spans overlap after scaling.

    Input pixel i spans [i, i + 1) * n_out / n_in in output pixels; a tiny epsilon keeps an edge that falls
    exactly on a pixel edge from claiming the neighbouring pixel."""
    s = n_out / n_in
    i = np.arange(n_in)
    r = np.arange(n_out)[:, None]
    return (i * s < r + 1 - 1e-9) & ((i + 1) * s > r + 1e-9)


def scale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask [h, w] -> [H, W] (size = (H, W)): every output pixel the region touches is in it.

    For a box this is exactly the box with its scaled edges rounded outwards."""
    h, w = mask.shape
    H, W = (int(v) for v in size)
    if (h, w) == (H, W):
        return mask.astype(bool, copy=True)
    rows, cols = _touching(h, H).astype(np.int64), _touching(w, W).astype(np.int64)
    return (rows @ mask.astype(np.int64) @ cols.T) > 0


def masks_of(regions: Sequence[Optional[Region]], *, image_size: tuple[int, int],
             map_size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Boolean masks [N, H, W] at ``map_size`` (default the image size) of one region (or None) per sample,
    given in the stored images' pixels (``image_size`` = (height, width)). A sample without a region gets
    an all-False row."""
    ih, iw = (int(v) for v in image_size)
    mh, mw = (int(v) for v in (map_size or image_size))
    out = np.zeros((len(regions), mh, mw), dtype=bool)
    for i, region in enumerate(regions):
        if region is None:
            continue
        out[i] = scale_mask(as_mask(region, ih, iw, where=f"sample {i}"), (mh, mw))
    return out


def describe(region: Optional[Region]) -> str:
    """A short text for captions: the box's coordinates, or the mask's pixel count."""
    if region is None:
        return "none"
    if is_mask(region):
        return f"mask of {int(np.count_nonzero(region))} px"
    return str([int(v) for v in region])


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (in the region, with a 4-neighbour outside it or on the edge)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~inner
