"""Reference datasets: image samples stored as PNG artifacts, text samples inline; both content-hashed."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
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


@dataclass
class ImageSamples:
    """Reference images as a float tensor [N, C, H, W] in [0, 1] with their keys, hashes, labels, groups."""

    name: str
    images: torch.Tensor
    keys: list[str]
    hashes: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    label_names: list[str]


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


def _content_hash(hashes: Sequence[str], labels: Sequence[Any], groups: Sequence[Any]) -> str:
    payload = json.dumps([list(hashes), list(labels), list(groups)], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def add_image_dataset(
    name: str, images: torch.Tensor, labels: Sequence[Optional[int]], groups: Sequence[dict[str, Any]],
    *, label_names: Sequence[str], description: str = "", actor: Principal = SYSTEM,
) -> dict[str, Any]:
    require(actor, "register")
    if images.ndim != 4 or images.shape[0] == 0:
        raise DatasetError(f"images must be a non-empty batch [N, C, H, W], got {tuple(images.shape)}")
    if not (len(labels) == len(groups) == images.shape[0]):
        raise DatasetError("images, labels and groups must have the same length")
    store = ArtifactStore()
    hashes = [store.put_bytes(png_bytes(img)) for img in images]
    samples = [Sample(sample_key=f"{name}-{i:04d}", content_sha256=h, label=None if y is None else int(y), groups=dict(g))
               for i, (h, y, g) in enumerate(zip(hashes, labels, groups))]
    return _add(name, "image", samples, hashes, labels, groups, label_names, description, actor)


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


def _add(name, kind, samples, hashes, labels, groups, label_names, description, actor) -> dict[str, Any]:  # noqa: ANN001
    with transaction() as s:
        repo = DatasetRepository(s)
        if repo.get(name) is not None:
            raise DatasetError(f"dataset {name!r} already exists")
        ds = repo.add(Dataset(name=name, kind=kind, description=description,
                              content_sha256=_content_hash(hashes, labels, groups), labels=list(label_names)),
                      samples)
        auditlog.append(s, actor=actor.username, action="dataset.add", subject=name,
                        details={"kind": kind, "samples": len(samples), "sha256": ds.content_sha256})
        return {"name": name, "kind": kind, "samples": len(samples), "sha256": ds.content_sha256}


def list_datasets() -> list[dict[str, Any]]:
    with transaction() as s:
        return [{"name": d.name, "kind": d.kind, "samples": len(d.samples), "sha256": d.content_sha256,
                 "description": d.description, "labels": list(d.labels or [])}
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
                        [r.label for r in rows], [dict(r.groups or {}) for r in rows], label_names)


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
