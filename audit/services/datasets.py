"""Reference datasets: image samples stored as PNG artifacts, text samples inline; both content-hashed."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from audit.services.auth import SYSTEM, Principal, require
from storage import auditlog
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import Dataset, Sample
from storage.repositories import DatasetRepository


class DatasetError(ValueError):
    """A dataset request that cannot proceed; the message says why."""


Region = list[int]  # [x0, y0, x1, y1] pixel box in the stored image's coordinates, x1 and y1 exclusive


@dataclass
class ImageSamples:
    """Reference images as a float tensor [N, C, H, W] in [0, 1] with their keys, hashes, labels, groups,
    and the region each sample declares (None where it declares none)."""

    name: str
    images: torch.Tensor
    keys: list[str]
    hashes: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    label_names: list[str]
    regions: list[Optional[Region]] = field(default_factory=list)

    @property
    def has_regions(self) -> bool:
        return any(r is not None for r in self.regions)


@dataclass
class TextSamples:
    name: str
    texts: list[str]
    keys: list[str]
    hashes: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    label_names: list[str]


def png_bytes(image: torch.Tensor) -> bytes:
    """[C, H, W] float in [0, 1] -> PNG bytes (8-bit), deterministic."""
    from PIL import Image

    arr = (image.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def decode_png(data: bytes) -> torch.Tensor:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


def _content_hash(hashes: Sequence[str], labels: Sequence[Any], groups: Sequence[Any],
                  regions: Optional[Sequence[Optional[Region]]] = None) -> str:
    parts: list[Any] = [list(hashes), list(labels), list(groups)]
    if regions is not None and any(r is not None for r in regions):
        parts.append(list(regions))  # only then, so sets without regions keep the hash they always had
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def check_regions(regions: Sequence[Any], *, height: int, width: int) -> list[Optional[Region]]:
    """Validate one optional pixel box per sample: [x0, y0, x1, y1] integers with 0 <= x0 < x1 <= width and
    0 <= y0 < y1 <= height. Raises DatasetError naming the first bad sample."""
    out: list[Optional[Region]] = []
    for i, box in enumerate(regions):
        if box is None:
            out.append(None)
            continue
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            raise DatasetError(f"sample {i}: a region must be four numbers [x0, y0, x1, y1], got {box!r}") from None
        if len(values) != 4 or not all(v.is_integer() for v in values):
            raise DatasetError(f"sample {i}: a region must be four integer pixel coordinates [x0, y0, x1, y1], "
                               f"got {box!r}")
        x0, y0, x1, y1 = (int(v) for v in values)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise DatasetError(f"sample {i}: region {[x0, y0, x1, y1]} is not a non-empty box inside the "
                               f"{width}x{height} image (0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height)")
        out.append([x0, y0, x1, y1])
    return out


def add_image_dataset(
    name: str, images: torch.Tensor, labels: Sequence[Optional[int]], groups: Sequence[dict[str, Any]],
    *, label_names: Sequence[str], description: str = "", regions: Optional[Sequence[Any]] = None,
    actor: Principal = SYSTEM,
) -> dict[str, Any]:
    """``regions``: optional, one pixel box [x0, y0, x1, y1] (or None) per image, in the images' own
    coordinates; explanation disparity measures the share of attribution inside them."""
    require(actor, "register")
    if images.ndim != 4 or images.shape[0] == 0:
        raise DatasetError(f"images must be a non-empty batch [N, C, H, W], got {tuple(images.shape)}")
    if not (len(labels) == len(groups) == images.shape[0]):
        raise DatasetError("images, labels and groups must have the same length")
    if regions is not None and len(regions) != images.shape[0]:
        raise DatasetError(f"regions must have one entry (a box or None) per image: {len(regions)} for "
                           f"{images.shape[0]} images")
    boxes = check_regions(regions, height=images.shape[-2], width=images.shape[-1]) if regions is not None else None
    store = ArtifactStore()
    hashes = [store.put_bytes(png_bytes(img)) for img in images]
    samples = [Sample(sample_key=f"{name}-{i:04d}", content_sha256=h, label=None if y is None else int(y), groups=dict(g),
                      region=boxes[i] if boxes is not None else None)
               for i, (h, y, g) in enumerate(zip(hashes, labels, groups))]
    return _add(name, "image", samples, hashes, labels, groups, label_names, description, actor, regions=boxes)


def add_text_dataset(
    name: str, texts: Sequence[str], labels: Sequence[Optional[int]], groups: Sequence[dict[str, Any]],
    *, label_names: Sequence[str], description: str = "", actor: Principal = SYSTEM,
) -> dict[str, Any]:
    require(actor, "register")
    if not texts:
        raise DatasetError("a text dataset needs at least one text")
    if not (len(labels) == len(groups) == len(texts)):
        raise DatasetError("texts, labels and groups must have the same length")
    hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    samples = [Sample(sample_key=f"{name}-{i:04d}", content_sha256=h, label=None if y is None else int(y),
                      groups=dict(g), text=t)
               for i, (t, h, y, g) in enumerate(zip(texts, hashes, labels, groups))]
    return _add(name, "text", samples, hashes, labels, groups, label_names, description, actor)


def _add(name, kind, samples, hashes, labels, groups, label_names, description, actor,  # noqa: ANN001
         regions=None) -> dict[str, Any]:
    with transaction() as s:
        repo = DatasetRepository(s)
        if repo.get(name) is not None:
            raise DatasetError(f"dataset {name!r} already exists")
        ds = repo.add(Dataset(name=name, kind=kind, description=description,
                              content_sha256=_content_hash(hashes, labels, groups, regions), labels=list(label_names)),
                      samples)
        auditlog.append(s, actor=actor.username, action="dataset.add", subject=name,
                        details={"kind": kind, "samples": len(samples), "sha256": ds.content_sha256})
        return {"name": name, "kind": kind, "samples": len(samples), "sha256": ds.content_sha256}


def list_datasets() -> list[dict[str, Any]]:
    with transaction() as s:
        return [{"name": d.name, "kind": d.kind, "samples": len(d.samples), "sha256": d.content_sha256,
                 "description": d.description, "labels": list(d.labels or []),
                 "regions": any(r.region is not None for r in d.samples)}
                for d in DatasetRepository(s).all()]


def load_image_samples(name: str, *, keys: Optional[Sequence[str]] = None) -> ImageSamples:
    store = ArtifactStore()
    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        if ds.kind != "image":
            raise DatasetError(f"dataset {name!r} holds {ds.kind}, not images")
        rows = list(ds.samples)
        label_names = list(ds.labels or [])
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r.sample_key in wanted]
        missing = wanted - {r.sample_key for r in rows}
        if missing:
            raise DatasetError(f"unknown sample ids in {name}: {', '.join(sorted(missing)[:5])}")
    images = torch.stack([decode_png(store.get_bytes(r.content_sha256)) for r in rows]) if rows else torch.empty(0)
    return ImageSamples(name, images, [r.sample_key for r in rows], [r.content_sha256 for r in rows],
                        [r.label for r in rows], [dict(r.groups or {}) for r in rows], label_names,
                        [list(r.region) if r.region is not None else None for r in rows])


def load_text_samples(name: str) -> TextSamples:
    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        if ds.kind != "text":
            raise DatasetError(f"dataset {name!r} holds {ds.kind}, not texts")
        rows = list(ds.samples)
        return TextSamples(name, [r.text or "" for r in rows], [r.sample_key for r in rows],
                           [r.content_sha256 for r in rows], [r.label for r in rows],
                           [dict(r.groups or {}) for r in rows], list(ds.labels or []))


def pick_reference_set(name: Optional[str], task: str, labels: Sequence[str]) -> dict[str, Any]:
    """The one reference-set picker (drift, reports, full audits): the named set, or the first stored
    set of the model's kind whose class labels match. Returns {"name", "id", "sha256"}."""
    kind = "text" if task == "text-classification" else "image"
    with transaction() as s:
        repo = DatasetRepository(s)
        if name:
            ds = repo.get(name)
            if ds is None:
                raise DatasetError(f"dataset {name!r} does not exist")
            if ds.kind != kind:
                raise DatasetError(f"dataset {name!r} holds {ds.kind} samples but the family takes {kind}")
            return {"name": ds.name, "id": ds.id, "sha256": ds.content_sha256}
        same_kind = [d for d in repo.all() if d.kind == kind]
        if not same_kind:
            raise DatasetError(f"no {kind} reference set is stored; add one, then pass --dataset")
        matching = [d for d in same_kind if list(d.labels or []) == list(labels)] or same_kind
        ds = matching[0]
        return {"name": ds.name, "id": ds.id, "sha256": ds.content_sha256}
