"""Reference datasets: image samples stored as PNG artifacts, text samples inline; both content-hashed."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from audit.datasets.problems import ImportLimits
from audit.models.tasks import input_kind
from audit.regions import as_mask, is_mask
from audit.services.auth import SYSTEM, Principal, require
from storage import auditlog
from storage.artifacts import ArtifactStore, discard_on_failure
from storage.db import transaction
from storage.orm import Dataset, Sample
from storage.repositories import DatasetRepository


class DatasetError(ValueError):
    """A dataset request that cannot proceed; the message says why."""


# A pixel box [x0, y0, x1, y1] in the stored image's coordinates (x1 and y1 exclusive), or a boolean mask
# [H, W] of the stored image's size (see audit.regions; a box is a special case of a mask).
Region = Any


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
    # Each sample's class name (None: unlabelled), and its stored image's (width, height).
    label_texts: list[Optional[str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    # Loaded for a model: ``images`` are its view (its resize and crop), ``labels`` its class indices,
    # ``label_names`` its class names, and ``regions`` moved into the view; ``outside_view`` marks samples
    # whose declared region the crop left entirely out.
    for_model: bool = False
    outside_view: list[bool] = field(default_factory=list)

    @property
    def has_regions(self) -> bool:
        return any(r is not None for r in self.regions)


@dataclass
class TextSamples:
    """Texts with their labels: positions in ``label_names`` (the dataset's own names, or the model's class
    indices and names when loaded for a model)."""

    name: str
    texts: list[str]
    keys: list[str]
    hashes: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    label_names: list[str]
    label_texts: list[Optional[str]] = field(default_factory=list)
    for_model: bool = False


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
    """Validate one optional region per sample: a pixel box [x0, y0, x1, y1] of integers with
    0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, or a 2-D mask of the images' size with a nonzero pixel
    (returned as a boolean array). Raises DatasetError naming the first bad sample."""
    out: list[Optional[Region]] = []
    for i, box in enumerate(regions):
        if box is None:
            out.append(None)
            continue
        if is_mask(box):
            try:
                out.append(as_mask(box, height, width, where=f"sample {i}"))
            except ValueError as exc:
                raise DatasetError(str(exc)) from None
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
    """``regions``: optional, one pixel box [x0, y0, x1, y1], boolean mask [H, W] or None per image, in the
    images' own coordinates; explanation disparity and localisation measure attribution inside them."""
    require(actor, "register")
    if images.ndim != 4 or images.shape[0] == 0:
        raise DatasetError(f"images must be a non-empty batch [N, C, H, W], got {tuple(images.shape)}")
    if not (len(labels) == len(groups) == images.shape[0]):
        raise DatasetError("images, labels and groups must have the same length")
    if regions is not None and len(regions) != images.shape[0]:
        raise DatasetError(f"regions must have one entry (a box or None) per image: {len(regions)} for "
                           f"{images.shape[0]} images")
    boxes = check_regions(regions, height=images.shape[-2], width=images.shape[-1]) if regions is not None else None
    return _add_pngs(name, [png_bytes(img) for img in images], labels, groups, label_names, description, actor,
                     boxes)


def _add_pngs(name, pngs, labels, groups, label_names, description, actor, boxes,  # noqa: ANN001
              details=None) -> dict[str, Any]:  # noqa: ANN001
    """Store PNG samples: artifacts first, then one transaction; the files this call created are removed
    again if anything fails before that transaction commits (a full disk, a name taken meanwhile)."""
    store = ArtifactStore()
    with discard_on_failure():
        hashes = [store.put_bytes(data) for data in pngs]
        regions = list(boxes) if boxes is not None else [None] * len(pngs)
        masks = [store.put_bytes(mask_png(r)) if is_mask(r) else None for r in regions]
        samples = [Sample(sample_key=f"{name}-{i:04d}", content_sha256=h, label=None if y is None else int(y),
                          label_name=_name_of(y, label_names), groups=dict(g),
                          region=None if r is None or m is not None else [int(v) for v in r], region_mask=m)
                   for i, (h, y, g, r, m) in enumerate(zip(hashes, labels, groups, regions, masks))]
        # The content hash names a mask by its artifact's hash, so equal masks give equal hashes.
        keyed = None if boxes is None else [m if m is not None else r for r, m in zip(regions, masks)]
        return _add(name, "image", samples, hashes, labels, groups, label_names, description, actor,
                    regions=keyed, details=details)


def _name_of(position: Optional[int], label_names: Sequence[str]) -> Optional[str]:
    """The class name a label position stands for; a position outside the names is refused."""
    if position is None:
        return None
    if not 0 <= int(position) < len(label_names):
        raise DatasetError(f"label {position} is not a position in the label names ({len(label_names)} given)")
    return str(label_names[int(position)])


def _row_label_name(row: Sample, names: Sequence[str]) -> Optional[str]:
    if row.label_name is not None:
        return row.label_name
    return _name_of(row.label, names) if row.label is not None else None


def mask_png(mask: Any) -> bytes:
    """A boolean mask [H, W] -> an 8-bit greyscale PNG (255 inside the region, 0 outside), deterministic."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)).save(buf, format="PNG",
                                                                                          optimize=False)
    return buf.getvalue()


def _sample_region(store: ArtifactStore, row: Sample) -> Optional[Region]:
    if row.region_mask is not None:
        return decode_png(store.get_bytes(row.region_mask))[0].numpy() > 0
    return list(row.region) if row.region is not None else None


def _declares_region(row: Sample) -> bool:
    return row.region is not None or row.region_mask is not None


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
                      label_name=_name_of(y, label_names), groups=dict(g), text=t)
               for i, (t, h, y, g) in enumerate(zip(texts, hashes, labels, groups))]
    return _add(name, "text", samples, hashes, labels, groups, label_names, description, actor)


def _add(name, kind, samples, hashes, labels, groups, label_names, description, actor,  # noqa: ANN001
         regions=None, details=None) -> dict[str, Any]:
    with transaction() as s:
        repo = DatasetRepository(s)
        if repo.get(name) is not None:
            raise DatasetError(f"dataset {name!r} already exists")
        ds = repo.add(Dataset(name=name, kind=kind, description=description,
                              content_sha256=_content_hash(hashes, labels, groups, regions), labels=list(label_names)),
                      samples)
        auditlog.append(s, actor=actor.username, action="dataset.add", subject=name,
                        details={"kind": kind, "samples": len(samples), "sha256": ds.content_sha256,
                                 **(details or {})})
        return {"name": name, "kind": kind, "samples": len(samples), "sha256": ds.content_sha256}


def list_datasets() -> list[dict[str, Any]]:
    with transaction() as s:
        return [{"name": d.name, "kind": d.kind, "samples": len(d.samples), "sha256": d.content_sha256,
                 "description": d.description, "labels": list(d.labels or []),
                 "regions": any(_declares_region(r) for r in d.samples), "groups": _group_names(d.samples)}
                for d in DatasetRepository(s).all()]


def _group_names(samples: Sequence[Sample]) -> list[str]:
    """Group attribute names in the order the samples first use them."""
    names: dict[str, None] = {}
    for r in samples:
        names.update(dict.fromkeys(r.groups or {}))
    return list(names)


def _dataset_rows(name: str, kind: str) -> tuple[list[Sample], list[str]]:
    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        if ds.kind != kind:
            raise DatasetError(f"dataset {name!r} holds {ds.kind}, not {'images' if kind == 'image' else 'texts'}")
        rows = list(ds.samples)
        for r in rows:  # detach what is read after the session closes
            s.expunge(r)
        return rows, list(ds.labels or [])


def _model_labels(model: Any, names: Sequence[Optional[str]], dataset: str) -> list[Optional[int]]:
    from audit.datasets.labels import LabelMismatch, labels_for_model

    try:
        return labels_for_model(names, list(model.labels), what=f"dataset {dataset!r}")
    except LabelMismatch as exc:
        raise DatasetError(str(exc)) from None


def load_image_samples(name: str, *, keys: Optional[Sequence[str]] = None, model: Any = None) -> ImageSamples:
    """A stored image set. With ``model`` (a ModelHandle): each image prepared as the model declares (its
    resize and crop, at its input size), labels as the model's class indices (by name), regions moved into
    the model's view. Without: the stored images, which must share one size to be stacked."""
    from PIL import Image

    store = ArtifactStore()
    rows, label_names = _dataset_rows(name, "image")
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r.sample_key in wanted]
        missing = wanted - {r.sample_key for r in rows}
        if missing:
            raise DatasetError(f"unknown sample ids in {name}: {', '.join(sorted(missing)[:5])}")
    names = [_row_label_name(r, label_names) for r in rows]
    stored_regions = [_sample_region(store, r) for r in rows]
    keys_, hashes, groups = [r.sample_key for r in rows], [r.content_sha256 for r in rows], [dict(r.groups or {}) for r in rows]
    if model is None:
        tensors = [decode_png(store.get_bytes(r.content_sha256)) for r in rows]
        sizes = [(int(t.shape[-1]), int(t.shape[-2])) for t in tensors]
        if len({tuple(t.shape) for t in tensors}) > 1:
            raise DatasetError(f"dataset {name!r} holds images of several sizes; they are prepared for a model "
                               "(load_image_samples(..., model=handle)) or read one by one (load_image_files)")
        images = torch.stack(tensors) if tensors else torch.empty(0)
        return ImageSamples(name, images, keys_, hashes, [r.label for r in rows], groups, label_names,
                            stored_regions, names, sizes)
    spec = model.input_spec
    if spec is None:
        raise DatasetError(f"dataset {name!r} holds images but the model takes text")
    prepared, sizes, regions, outside = [], [], [], []
    for r, region in zip(rows, stored_regions):
        with Image.open(io.BytesIO(store.get_bytes(r.content_sha256))) as img:
            img.load()
            sizes.append(img.size)
            prepared.append(spec.prepare(img))
        moved = spec.region_in_view(region, *img.size) if region is not None else None
        regions.append(moved)
        outside.append(region is not None and moved is None)
    images = torch.stack(prepared) if prepared else torch.empty(0)
    return ImageSamples(name, images, keys_, hashes, _model_labels(model, names, name), groups, list(model.labels),
                        regions, names, sizes, True, outside)


def load_image_files(name: str, *, keys: Optional[Sequence[str]] = None, with_regions: bool = False) -> list[Any]:
    """The stored images one by one ([C, H, W] in [0, 1], each at its own size), for viewing; with
    ``with_regions``, (image, region in its own pixels) pairs."""
    store = ArtifactStore()
    rows, _ = _dataset_rows(name, "image")
    if keys is not None:
        order = {k: i for i, k in enumerate(keys)}
        rows = sorted((r for r in rows if r.sample_key in order), key=lambda r: order[r.sample_key])
    images = [decode_png(store.get_bytes(r.content_sha256)) for r in rows]
    if with_regions:
        return [(img, _sample_region(store, r)) for img, r in zip(images, rows)]
    return images


@dataclass
class SampleIndex:
    """What a stored set holds, without decoding an image: keys, hashes, class names, groups, sizes unknown."""

    name: str
    kind: str
    keys: list[str]
    hashes: list[str]
    label_texts: list[Optional[str]]
    groups: list[dict[str, Any]]
    label_names: list[str]


def sample_index(name: str) -> SampleIndex:
    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        names = list(ds.labels or [])
        rows = list(ds.samples)
        return SampleIndex(ds.name, ds.kind, [r.sample_key for r in rows], [r.content_sha256 for r in rows],
                           [_row_label_name(r, names) for r in rows], [dict(r.groups or {}) for r in rows], names)


def find_sample(sample_sha256: str, *, dataset: Optional[str] = None) -> Optional[tuple[str, str]]:
    """(dataset name, sample key) of a stored image sample with this content hash, or None (no image is
    decoded)."""
    with transaction() as s:
        for ds in DatasetRepository(s).all():
            if ds.kind != "image" or (dataset and ds.name != dataset):
                continue
            for r in ds.samples:
                if r.content_sha256 == sample_sha256:
                    return ds.name, r.sample_key
    return None


def load_text_samples(name: str, *, model: Any = None) -> TextSamples:
    """A stored text set; with ``model`` its labels are the model's class indices (by name)."""
    rows, label_names = _dataset_rows(name, "text")
    names = [_row_label_name(r, label_names) for r in rows]
    out = TextSamples(name, [r.text or "" for r in rows], [r.sample_key for r in rows],
                      [r.content_sha256 for r in rows], [r.label for r in rows],
                      [dict(r.groups or {}) for r in rows], label_names, names)
    if model is not None:
        out.labels, out.label_names, out.for_model = _model_labels(model, names, name), list(model.labels), True
    return out


def dataset_key(name: str, model: Any) -> str:  # model: a ModelHandle or its list of class names
    """What a result computed on a stored set for ``model`` depends on: the set's content and how its label
    names map to the model's classes (the same names in another class order give another key)."""
    from audit.datasets.labels import label_map

    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        content, names = ds.content_sha256, list(ds.labels or [])
    if not names:
        return content
    labels = model.labels if hasattr(model, "labels") else model  # a handle, or its class names
    payload = json.dumps([content, label_map(names, list(labels))])
    return hashlib.sha256(payload.encode()).hexdigest()


def dataset_sha256(name: str, task: str) -> str:
    """The content hash of a named set whose kind suits ``task`` (one row read; samples are not loaded)."""
    return pick_reference_set(name, task, [])["sha256"]


def pick_reference_set(name: Optional[str], task: str, labels: Sequence[str]) -> dict[str, Any]:
    """The one reference-set picker (drift, reports, full audits): the named set, or the first stored
    set of the model's kind whose class labels match. Returns {"name", "id", "sha256"}."""
    kind = input_kind(task)
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
        # Unlabelled sets (concept sets) are a last resort: they cannot score a model.
        known = set(labels)
        matching = ([d for d in same_kind if list(d.labels or []) == list(labels)]
                    or [d for d in same_kind if d.labels and set(d.labels) <= known]  # names the model knows
                    or [d for d in same_kind if d.labels] or same_kind)
        ds = matching[0]
        return {"name": ds.name, "id": ds.id, "sha256": ds.content_sha256}


# ------------------------------------------------------------------ imports from the user's files

class DatasetValidationError(DatasetError):
    """An import whose files failed validation; nothing was stored. ``problems``: one line each."""

    def __init__(self, problems: Sequence[str], summary: str) -> None:
        self.problems = list(problems)
        self.summary = summary
        lines = self.problems[:10] + ([f"... and {len(self.problems) - 10} more"] if len(self.problems) > 10 else [])
        super().__init__("\n".join(lines))


def _validated(name: str, prepare):  # noqa: ANN001, ANN202
    """Run a preparation step; a taken name counts as one more problem, reported before any file is read."""
    from audit.datasets import InvalidDataset

    if not name or not name.strip():
        raise DatasetValidationError(["--name: a dataset needs a name"], "a dataset needs a name")
    with transaction() as s:
        taken = DatasetRepository(s).get(name) is not None
    if taken:
        msg = f"dataset {name!r} already exists; choose another name"
        raise DatasetValidationError([msg], msg)
    try:
        return prepare()
    except InvalidDataset as exc:
        raise DatasetValidationError(exc.problems, exc.one_line()) from None


def _family_info(family: Optional[str], task: str) -> tuple[Optional[list[str]], Optional[dict[str, Any]]]:
    """The newest version's labels and input spec of ``family`` (None, None without a family)."""
    if not family:
        return None, None
    from audit.services.registry import list_models

    fam = next((f for f in list_models() if f["family"] == family), None)
    if fam is None or not fam["versions"]:
        raise DatasetValidationError([f"--family: {family!r} is not registered"], f"family {family!r} is not registered")
    if fam["task"] != task:
        msg = f"family {family!r} is a {fam['task']} model; this dataset is for {task}"
        raise DatasetValidationError([f"--family: {msg}"], msg)
    newest = fam["versions"][-1]
    return list(newest.get("labels") or []), dict(newest.get("input_spec") or {})


def import_image_dataset(
    name: str, images: str | Path, index: str | Path, *, path_column: str = "path",
    label_column: Optional[str] = "label", group_columns: Sequence[str] = (),
    region_columns: Optional[Sequence[str]] = None, mask_column: Optional[str] = None, description: str = "",
    family: Optional[str] = None, limits: Optional[ImportLimits] = None, actor: Principal = SYSTEM,
    labels_are_indices: bool = False,
) -> dict[str, Any]:
    """Import an image reference set from a folder or zip plus a CSV index; all-or-nothing.

    Labels are class names (checked against ``family``'s names when given); with ``labels_are_indices`` and a
    family, the family's class indices (stored as the names they stand for). Each image is stored at its own
    size; every use prepares it as the model declares. Raises DatasetValidationError listing every problem;
    nothing is stored then."""
    require(actor, "register")
    prepared = _prepare_images(name, images, index, path_column=path_column, label_column=label_column,
                               group_columns=group_columns, region_columns=region_columns, mask_column=mask_column,
                               family=family, limits=limits, labels_are_indices=labels_are_indices)
    return _store_prepared(name, prepared, description, actor, source=str(images))


def _prepare_images(name: str, images: str | Path, index: str | Path, *, path_column: str,
                    label_column: Optional[str], group_columns: Sequence[str],
                    region_columns: Optional[Sequence[str]], family: Optional[str],
                    limits: Optional[ImportLimits], mask_column: Optional[str] = None,
                    labels_are_indices: bool = False) -> Any:
    """Validate and convert an image import (the one path of the import and its preview)."""
    from audit.datasets import Target, prepare_images

    family_labels, spec = _family_info(family, "image-classification")
    target = Target(spec.get("height"), spec.get("width"), spec.get("channels")) if spec else Target()
    return _validated(name, lambda: prepare_images(
        images, index, path_column=path_column, label_column=label_column, group_columns=list(group_columns),
        region_columns=list(region_columns) if region_columns else None, mask_column=mask_column or None,
        family_labels=family_labels, labels_are_indices=labels_are_indices,
        target=target, limits=limits or ImportLimits()))


def import_concept_set(name: str, images: str | Path, *, description: str = "", family: Optional[str] = None,
                       limits: Optional[ImportLimits] = None, actor: Principal = SYSTEM) -> dict[str, Any]:
    """Every image in a folder or zip as an unlabelled image dataset, usable as a TCAV concept by name."""
    from audit.datasets import Target, prepare_images

    require(actor, "register")
    _, spec = _family_info(family, "image-classification")
    target = Target(spec.get("height"), spec.get("width"), spec.get("channels")) if spec else Target()
    prepared = _validated(name, lambda: prepare_images(images, None, target=target, limits=limits or ImportLimits()))
    return _store_prepared(name, prepared, description or "concept set", actor, source=str(images), purpose="concept")


def _store_prepared(name, prepared, description, actor, *, source, purpose="reference"):  # noqa: ANN001, ANN202
    out = _add_pngs(name, prepared.pngs, prepared.labels, prepared.groups, prepared.label_names, description, actor,
                    prepared.regions, details={"source": source, "purpose": purpose,
                                               "size": [prepared.channels, prepared.height, prepared.width],
                                               "resized": prepared.resized})
    return {**out, "size": [prepared.channels, prepared.height, prepared.width], "resized": prepared.resized,
            "regions": prepared.regions is not None and any(r is not None for r in prepared.regions)}


def import_text_dataset(
    name: str, path: str | Path, *, text_column: str = "text", label_column: Optional[str] = "label",
    group_columns: Sequence[str] = (), description: str = "", family: Optional[str] = None,
    limits: Optional[ImportLimits] = None, actor: Principal = SYSTEM, labels_are_indices: bool = False,
) -> dict[str, Any]:
    """Import a text reference set from CSV or JSON Lines; all-or-nothing (see import_image_dataset)."""
    from audit.datasets import prepare_texts

    require(actor, "register")
    family_labels, _ = _family_info(family, "text-classification")
    prepared = _validated(name, lambda: prepare_texts(
        path, text_column=text_column, label_column=label_column, group_columns=list(group_columns),
        family_labels=family_labels, limits=limits or ImportLimits(), labels_are_indices=labels_are_indices))
    return add_text_dataset(name, prepared.texts, prepared.labels, prepared.groups, label_names=prepared.label_names,
                            description=description, actor=actor)


def dataset_summary(name: str) -> dict[str, Any]:
    """What `dataset show` prints: samples, labels with counts, groups with value counts, regions."""
    from collections import Counter

    with transaction() as s:
        ds = DatasetRepository(s).get(name)
        if ds is None:
            raise DatasetError(f"dataset {name!r} does not exist")
        rows = list(ds.samples)
        names = list(ds.labels or [])
        label_counts = Counter(r.label for r in rows)
        groups: dict[str, Counter] = {g: Counter() for g in _group_names(rows)}
        for r in rows:
            for g, v in (r.groups or {}).items():
                groups[g][str(v)] += 1
        return {
            "name": ds.name, "kind": ds.kind, "samples": len(rows), "sha256": ds.content_sha256,
            "description": ds.description,
            "labels": {("(none)" if y is None else names[y] if 0 <= y < len(names) else str(y)): n
                       for y, n in sorted(label_counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
            "groups": {g: dict(sorted(c.items())) for g, c in groups.items()},
            "regions": any(_declares_region(r) for r in rows),
            "region_masks": sum(r.region_mask is not None for r in rows),
        }


def preview_image_import(
    name: str, images: str | Path, index: str | Path, *, path_column: str = "path",
    label_column: Optional[str] = "label", group_columns: Sequence[str] = (),
    region_columns: Optional[Sequence[str]] = None, mask_column: Optional[str] = None, family: Optional[str] = None,
    n: int = 12, limits: Optional[ImportLimits] = None, labels_are_indices: bool = False,
    actor: Principal = SYSTEM,
) -> dict[str, Any]:
    """Validate an image import exactly as ``import_image_dataset`` would, store nothing, and return what
    would be stored: counts, label names, group columns, and the first ``n`` samples as [H, W(, 3)] arrays in
    [0, 1] with their labels, groups and boxes. Raises DatasetValidationError listing every problem. Decoding an
    upload is the importer's work, so the preview needs the import's permission."""
    from collections import Counter

    require(actor, "register")

    prepared = _prepare_images(name, images, index, path_column=path_column, label_column=label_column,
                               group_columns=group_columns, region_columns=region_columns, mask_column=mask_column,
                               family=family, limits=limits, labels_are_indices=labels_are_indices)
    shown = []
    for i, png in enumerate(prepared.pngs[:n]):
        img = decode_png(png)
        label = prepared.labels[i]
        shown.append({"image": img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(),
                      "source": prepared.sources[i] if i < len(prepared.sources) else "",
                      "label": None if label is None else prepared.label_names[label],
                      "groups": dict(prepared.groups[i]),
                      "region": prepared.regions[i] if prepared.regions else None})
    counts = Counter(prepared.label_names[y] for y in prepared.labels if y is not None)
    return {"samples": len(prepared.pngs), "size": [prepared.channels, prepared.height, prepared.width],
            "resized": prepared.resized, "label_counts": dict(counts), "unlabelled": prepared.labels.count(None),
            "groups": sorted({k for g in prepared.groups for k in g}), "regions": prepared.regions is not None,
            "preview": shown}
