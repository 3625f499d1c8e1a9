"""Turn an images folder/zip plus an index, or a text file, into validated samples ready to store.

Everything is checked before anything is returned, and every problem is reported with the row or file
it comes from (``InvalidDataset``). Each image is stored at its own size (a longer side beyond the import cap is scaled down); every use prepares
it as the model declares (``InputSpec.prepare``). Regions (a box from four columns, or a mask image from one)
are given in each file's own pixels and stay in the stored image's pixels."""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from audit.datasets.problems import ImportLimits, InvalidDataset, Problems
from audit.datasets.sources import ImageSource, normalise_member
from audit.datasets.tables import Row, read_csv, read_table
from audit.regions import Region, scale_mask

_GREY_MODES = ("L", "LA", "1", "I", "I;16", "F")


@dataclass
class Target:
    """What the stored images look like: the family's input spec when one is given."""

    height: Optional[int] = None
    width: Optional[int] = None
    channels: Optional[int] = None


@dataclass
class PreparedImages:
    pngs: list[bytes]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    regions: Optional[list[Optional[Region]]]  # a box [x0, y0, x1, y1] or a boolean mask [H, W] per sample
    label_names: list[str]
    sources: list[str]
    height: int
    width: int
    channels: int
    resized: int = 0  # images whose longer side was scaled down to the import cap
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each stored image


@dataclass
class PreparedTexts:
    texts: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    label_names: list[str]
    sources: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ labels, groups, regions

def _label_text(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _natural(names: set[str]) -> list[str]:
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def resolve_labels(rows: Sequence[Row], column: str, family_labels: Optional[Sequence[str]],
                   problems: Problems, *, as_indices: bool = False) -> tuple[list[Optional[int]], list[str]]:
    """Class names -> positions in the dataset's own label names (the names present, sorted; numerically when
    all are integers). With ``family_labels`` the names must be the family's class names (unknown ones are
    one problem listing them with the nearest names). ``as_indices``: the column holds the family's class
    indices, which are stored as the names they stand for."""
    texts = []
    for r in rows:
        t = _label_text(r.values.get(column))
        if t is None:
            problems.add(r.where, f"has no label in column {column!r}")
        texts.append(t)
    if as_indices:
        if family_labels is None:
            problems.add(f"--label-column {column}", "class indices need the model family (--family) they index")
            return [None] * len(rows), []
        for i, (r, t) in enumerate(zip(rows, texts)):
            if t is None:
                continue
            if t.lstrip("-").isdigit() and 0 <= int(t) < len(family_labels):
                texts[i] = str(family_labels[int(t)])
            else:
                problems.add(r.where, f"label {t!r} is not a class index of the family (0..{len(family_labels) - 1})")
                texts[i] = None
    if family_labels is not None:
        from audit.datasets.labels import nearest_names

        known = set(family_labels)
        for i, (r, t) in enumerate(zip(rows, texts)):
            if t is not None and t not in known:
                near = nearest_names(t, family_labels)
                problems.add(r.where, f"unknown label {t!r}: not a class name of the family"
                                      + (f" (nearest: {', '.join(repr(n) for n in near)})" if near else ""))
                texts[i] = None
        present = {t for t in texts if t is not None}
        names = [n for n in family_labels if n in present]
    else:
        names = _natural({t for t in texts if t is not None})
    index = {n: i for i, n in enumerate(names)}
    return [index.get(t) if t is not None else None for t in texts], names


def _groups(row: Row, columns: Sequence[str]) -> dict[str, Any]:
    out = {}
    for c in columns:
        v = row.values.get(c)
        out[c] = v if isinstance(v, (bool, int, float)) or v is None else str(v).strip()
    return out


def _box(row: Row, columns: Sequence[str], width: int, height: int, problems: Problems) -> Optional[list[int]]:
    raw = [str(row.values.get(c, "")).strip() for c in columns]
    if not any(raw):
        return None
    try:
        values = [float(v) for v in raw]
    except ValueError:
        problems.add(row.where, f"region {raw} must be four integer pixel coordinates x0, y0, x1, y1")
        return None
    if not all(v.is_integer() for v in values):
        problems.add(row.where, f"region {raw} must be four integer pixel coordinates x0, y0, x1, y1")
        return None
    x0, y0, x1, y1 = (int(v) for v in values)
    if x1 <= x0 or y1 <= y0:
        problems.add(row.where, f"region [{x0}, {y0}, {x1}, {y1}] is empty: x1 must exceed x0 and y1 exceed y0")
        return None
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        problems.add(row.where, f"region [{x0}, {y0}, {x1}, {y1}] lies outside the {width}x{height} image")
        return None
    return [x0, y0, x1, y1]


def scale_box(box: list[int], src: tuple[int, int], dst: tuple[int, int]) -> list[int]:
    """A box in a (w, h) image -> the same box in the image resized to (W, H), grown to whole pixels."""
    (w, h), (W, H) = src, dst
    x0, y0, x1, y1 = box
    return [max(0, math.floor(x0 * W / w)), max(0, math.floor(y0 * H / h)),
            min(W, math.ceil(x1 * W / w)), min(H, math.ceil(y1 * H / h))]


# ------------------------------------------------------------------ masks

def _mask(source: ImageSource, row: Row, column: str, image: tuple[int, int], limits: ImportLimits,
          problems: Problems) -> Optional[np.ndarray]:
    """The boolean mask a row names in ``column`` (nonzero pixels are the region), or None when the cell is
    empty. The file must be in the images folder/zip, readable, of its image's size, and not all zero."""
    raw = str(row.values.get(column, "") or "").strip()
    if not raw:
        return None
    if normalise_member(raw) is None:
        problems.add(row.where, f"mask path {raw!r} escapes the image folder")
        return None
    rel = source.resolve(raw)
    if rel is None:
        problems.add(row.where, f"mask file {raw!r} is missing from {source.label}")
        return None
    try:
        img = _decode(source.read(rel), limits)
    except (OSError, ValueError) as exc:
        problems.add(row.where, f"mask {rel} {exc}")
        return None
    if img.size != image:
        problems.add(row.where, f"mask {rel} is {img.size[0]}x{img.size[1]} pixels but its image is "
                                f"{image[0]}x{image[1]}; a mask must have its image's size")
        return None
    if img.mode.startswith("P"):  # palette indices are not pixel values
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "RGBA", "RGBa"):  # transparency is not the region
        img = img.convert("L" if img.mode.startswith("L") else "RGB")
    arr = np.asarray(img)
    mask = (arr != 0).any(axis=2) if arr.ndim == 3 else arr != 0
    if not mask.any():
        problems.add(row.where, f"mask {rel} has no nonzero pixel; leave the cell empty for a sample without a region")
        return None
    return mask


# ------------------------------------------------------------------ images

def _decode(data: bytes, limits: ImportLimits):  # noqa: ANN202
    """Bytes -> a fully decoded PIL image in one of the accepted formats (``audit.images.ALLOWED_FORMATS``;
    Pillow's other plugins are never tried), or ValueError with the reason. Samples and masks both come here."""
    from PIL import Image, UnidentifiedImageError

    from audit.images import ALLOWED_FORMATS, FORMATS_TEXT, MAX_PIXELS

    if not data:
        raise ValueError("is empty")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:  # bombs: as in decode_image
            w, h = probe.size
    except UnidentifiedImageError:
        raise ValueError(f"is not an image in an accepted format ({FORMATS_TEXT})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"declares too many pixels; at most {MAX_PIXELS} pixels are accepted") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot be read as an image ({exc})") from None
    if w < 1 or h < 1 or w * h > MAX_PIXELS:
        raise ValueError(f"is {w}x{h} pixels; at most {MAX_PIXELS} pixels are accepted")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"is corrupt or truncated ({exc})") from None
    return img


def _probe(source: ImageSource, rel: str, where: str, limits: ImportLimits, problems: Problems):  # noqa: ANN202
    """Fully decode one file (so truncated files are caught now); returns (width, height, mode) or None."""
    try:
        img = _decode(source.read(rel), limits)
    except (OSError, ValueError) as exc:
        problems.add(where, f"{rel} {exc}")
        return None
    return img.size[0], img.size[1], img.mode


def stored_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Each image is stored at its own size; only a longer side beyond ``max_side`` is scaled down."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    return max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest))


def _encode(source: ImageSource, rel: str, size: tuple[int, int], channels: int) -> bytes:
    """The stored form: 8-bit PNG, grey or RGB, at ``size`` (its own unless capped; bytes equal to
    ``png_bytes``)."""
    from PIL import Image

    img = _decode(source.read(rel), source.limits)
    if img.mode in ("I", "I;16", "F"):  # wide grey: scale to 8 bits rather than clip
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.max() > 0 else 1.0
        img = Image.fromarray((arr / hi * 255).round().astype(np.uint8))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != size:
        img = img.resize(size, Image.BILINEAR, reducing_gap=None)

    # A fresh image from the pixels alone: no ICC profile or other metadata of the source file travels
    # into the PNG, so equal pixels give equal bytes (and one shared artifact).
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _common_shape(found: list[tuple[int, int, str]], target: Target) -> tuple[int, int, int]:
    """The most common size (what a listing shows; each image keeps its own) and the stored channels."""
    sizes = Counter((w, h) for w, h, _ in found)
    best = max(sizes.values())
    width, height = next((w, h) for w, h, _ in found if sizes[(w, h)] == best)  # ties: the first seen
    channels = target.channels or (1 if all(m in _GREY_MODES for _, _, m in found) else 3)
    return width, height, channels


def prepare_images(images: str | Path, index: Optional[str | Path], *, path_column: str = "path",
                   label_column: Optional[str] = "label", group_columns: Sequence[str] = (),
                   region_columns: Optional[Sequence[str]] = None, mask_column: Optional[str] = None,
                   family_labels: Optional[Sequence[str]] = None, target: Optional[Target] = None,
                   limits: Optional[ImportLimits] = None, labels_are_indices: bool = False) -> PreparedImages:
    """Validate and convert. Without ``index`` every image in the folder/zip is a sample, unlabelled
    (a concept set). ``mask_column`` names a column of mask image paths (in the same folder/zip; nonzero
    pixels are the region; empty cell: no region); a row may declare a box or a mask, not both.
    Raises InvalidDataset listing every problem found."""
    target, limits = target or Target(), limits or ImportLimits()
    problems = Problems()
    if region_columns is not None and len(region_columns) != 4:
        problems.add("--region-columns", f"needs four column names x0,y0,x1,y1, got {list(region_columns)}")
        problems.raise_if_any()
    with ImageSource(images, limits, problems) as source:
        if index is None:
            rows = [Row(f"file {n}", {"path": n}) for n in source.names()]
            path_column, label_column, group_columns, region_columns, mask_column = "path", None, (), None, None
            if not rows and not problems:
                problems.add(source.label, "holds no image files")
        else:
            required = [path_column, *([label_column] if label_column else []), *group_columns,
                        *(region_columns or []), *([mask_column] if mask_column else [])]
            rows = read_csv(Path(index), required, limits, problems)
        problems.raise_if_any()  # without a readable source and index the per-row checks mean nothing

        seen: dict[str, str] = {}
        resolved: list[Optional[str]] = []
        found: list[Optional[tuple[int, int, str]]] = []
        for r in rows:
            raw = str(r.values.get(path_column, "")).strip()
            rel = None
            if not raw:
                problems.add(r.where, f"has no file name in column {path_column!r}")
            elif normalise_member(raw) is None:
                problems.add(r.where, f"path {raw!r} escapes the image folder")
            elif (rel := source.resolve(raw)) is None:
                problems.add(r.where, f"image file {raw!r} is missing from {source.label}")
            elif rel in seen:
                problems.add(r.where, f"image file {raw!r} is already listed at {seen[rel]}")
                rel = None
            else:
                seen[rel] = r.where
            resolved.append(rel)
            found.append(_probe(source, rel, r.where, limits, problems) if rel else None)

        labels, label_names = [None] * len(rows), []
        if label_column:
            labels, label_names = resolve_labels(rows, label_column, family_labels, problems,
                                                 as_indices=labels_are_indices)
        regions = None
        if region_columns:
            regions = [_box(r, region_columns, f[0], f[1], problems) if f else None for r, f in zip(rows, found)]
        if mask_column:
            masks = [_mask(source, r, mask_column, (f[0], f[1]), limits, problems) if f else None
                     for r, f in zip(rows, found)]
            regions = regions or [None] * len(rows)
            for i, (r, m) in enumerate(zip(rows, masks)):
                if m is not None and regions[i] is not None:
                    problems.add(r.where, f"declares both a region box and a mask ({mask_column}); give one of them")
                elif m is not None:
                    regions[i] = m
        problems.raise_if_any()

        shapes = [f for f in found if f is not None]
        width, height, channels = _common_shape(shapes, target)
        pngs, resized, sizes = [], 0, []
        for rel, (w, h, _) in zip([r for r in resolved if r], shapes):
            size = stored_size(w, h, limits.max_side)
            pngs.append(_encode(source, rel, size, channels))
            sizes.append(size)
            resized += (w, h) != size
        if regions is not None:
            regions = [b if b is None or (w, h) == size else
                       scale_mask(b, (size[1], size[0])) if isinstance(b, np.ndarray) else scale_box(b, (w, h), size)
                       for b, (w, h, _), size in zip(regions, shapes, sizes)]
    return PreparedImages(pngs, labels, [_groups(r, group_columns) for r in rows], regions, label_names,
                          [rel for rel in resolved if rel], height, width, channels, resized, sizes)


# ------------------------------------------------------------------ texts

def prepare_texts(path: str | Path, *, text_column: str = "text", label_column: Optional[str] = "label",
                  group_columns: Sequence[str] = (), family_labels: Optional[Sequence[str]] = None,
                  limits: Optional[ImportLimits] = None, labels_are_indices: bool = False) -> PreparedTexts:
    """Validate a CSV or JSON Lines file of texts. Raises InvalidDataset listing every problem found."""
    limits = limits or ImportLimits()
    problems = Problems()
    required = [text_column, *([label_column] if label_column else []), *group_columns]
    rows = read_table(Path(path), required, limits, problems)
    problems.raise_if_any()
    texts = []
    for r in rows:
        t = r.values.get(text_column)
        if not isinstance(t, str) or not t.strip():
            problems.add(r.where, f"has no text in column {text_column!r}")
        texts.append(t if isinstance(t, str) else "")
    labels, label_names = [None] * len(rows), []
    if label_column:
        labels, label_names = resolve_labels(rows, label_column, family_labels, problems,
                                             as_indices=labels_are_indices)
    problems.raise_if_any()
    return PreparedTexts(texts, labels, [_groups(r, group_columns) for r in rows], label_names,
                         [r.where for r in rows])


__all__ = ["ImportLimits", "InvalidDataset", "PreparedImages", "PreparedTexts", "Target", "prepare_images",
           "prepare_texts", "scale_box"]
