"""Sixty real photographs of five ImageNet classes, built offline from the photos that installed packages
ship (scikit-image's ``skimage.data`` and scikit-learn's sample images), written as a new user would bring
them: a folder of PNGs of mixed sizes and orientations, a CSV index labelled with the model's class names
(rows and classes in another order than the model's), and the model's label list.

Used by ``python -m audit.bench audit --case pretrained`` and by the pretrained-model tests
(``tests/e2e_pretrained``), so that the benchmark and the acceptance test audit the same photographs.
scikit-image and scikit-learn (both in requirements.txt) are imported only when a photograph is read.

Six source photographs carry the five subjects; each gives several photographs by cropping a different
real region at a different scale (a crop is never stretched: width and height scale alike). Labels say what
the photograph shows, not what the model predicts: the striped cat is "tiger cat", which the model mostly
calls "Egyptian cat". Seven first-choice crops were replaced because the model's top two classes on them were
so close that resizing PIL images or float tensors gave different answers; now each photograph's
prediction is the same for every correct implementation of the preprocessing (a test checks it).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# photograph -> (package that ships it, the model's class name for its subject)
SOURCES: dict[str, tuple[str, str]] = {
    "chelsea": ("scikit-image", "tiger cat"),
    "coffee": ("scikit-image", "espresso"),
    "motorcycle_left": ("scikit-image", "moped"),
    "motorcycle_right": ("scikit-image", "moped"),
    "rocket": ("scikit-image", "missile"),
    "china": ("scikit-learn", "palace"),
}
CLASSES = sorted({label for _, label in SOURCES.values()})

# Crops per source photograph: (x0, y0, x1, y1) as fractions of its width and height, and the scale the
# crop is saved at. Each box keeps the subject (or a large part of it) in view.
CROPS: dict[str, list[tuple[tuple[float, float, float, float], float]]] = {
    "chelsea": [  # 451x300, the cat's head fills the frame
        ((0.0, 0.0, 1.0, 1.0), 0.85), ((0.0, 0.0, 0.9, 1.0), 1.0), ((0.05, 0.0, 0.75, 1.0), 1.0),
        ((0.1, 0.05, 0.6, 0.95), 0.8), ((0.0, 0.1, 0.8, 0.9), 0.75), ((0.0, 0.05, 1.0, 0.95), 0.6),
        ((0.1, 0.1, 0.75, 1.0), 1.0), ((0.0, 0.0, 0.66, 1.0), 0.7), ((0.2, 0.05, 0.7, 0.8), 1.2),
        ((0.05, 0.2, 0.9, 1.0), 0.9), ((0.1, 0.0, 0.9, 0.75), 0.8), ((0.25, 0.0, 0.75, 1.0), 0.6),
    ],
    "coffee": [  # 600x400, cup and saucer in the centre
        ((0.0, 0.0, 1.0, 1.0), 1.0), ((0.0, 0.0, 1.0, 1.0), 0.4), ((0.15, 0.0, 0.85, 1.0), 0.8),
        ((0.2, 0.0, 0.8, 0.9), 1.0), ((0.25, 0.0, 0.75, 0.75), 0.9), ((0.1, 0.05, 0.9, 0.95), 0.6),
        ((0.2, 0.0, 0.7, 1.0), 0.7), ((0.3, 0.0, 0.85, 0.7), 1.1), ((0.0, 0.0, 0.75, 1.0), 0.8),
        ((0.25, 0.0, 1.0, 1.0), 0.5), ((0.2, 0.05, 0.8, 0.6), 1.0), ((0.3, 0.1, 0.7, 0.9), 1.0),
    ],
    "motorcycle_left": [  # 741x500, the motorcycle across the lower two thirds
        ((0.0, 0.0, 1.0, 1.0), 1.0), ((0.0, 0.0, 1.0, 1.0), 0.45), ((0.05, 0.15, 0.95, 0.95), 0.7),
        ((0.1, 0.1, 0.9, 1.0), 0.55), ((0.0, 0.05, 0.7, 1.0), 0.6), ((0.25, 0.1, 1.0, 0.95), 0.5),
    ],
    "motorcycle_right": [  # 741x500, the same motorcycle seen from a camera to the right
        ((0.0, 0.0, 1.0, 1.0), 0.8), ((0.0, 0.15, 0.9, 1.0), 0.6), ((0.0, 0.1, 0.6, 1.0), 0.7),
        ((0.1, 0.2, 0.8, 1.0), 1.0), ((0.0, 0.0, 0.85, 0.9), 0.35), ((0.05, 0.25, 0.75, 0.95), 0.8),
    ],
    "rocket": [  # 640x427, the rocket standing in the centre between towers
        ((0.0, 0.0, 1.0, 1.0), 1.0), ((0.0, 0.0, 1.0, 1.0), 0.6), ((0.3, 0.0, 0.7, 1.0), 1.0),
        ((0.35, 0.15, 0.65, 1.0), 1.2), ((0.2, 0.1, 0.8, 1.0), 0.7), ((0.25, 0.0, 0.75, 0.9), 0.8),
        ((0.4, 0.2, 0.6, 1.0), 1.5), ((0.1, 0.0, 0.9, 1.0), 0.6), ((0.3, 0.25, 0.7, 1.0), 1.0),
        ((0.1, 0.05, 0.9, 0.95), 0.8), ((0.33, 0.1, 0.67, 0.9), 1.0), ((0.2, 0.3, 0.8, 1.0), 0.75),
    ],
    "china": [  # 640x427, the tower on the left third, a lake behind
        ((0.0, 0.0, 1.0, 1.0), 1.0), ((0.0, 0.0, 1.0, 1.0), 0.55), ((0.0, 0.0, 0.6, 1.0), 0.9),
        ((0.05, 0.0, 0.55, 1.0), 0.7), ((0.1, 0.05, 0.45, 0.95), 1.1), ((0.0, 0.1, 0.7, 0.9), 0.8),
        ((0.0, 0.0, 0.5, 0.8), 1.0), ((0.1, 0.15, 0.5, 1.0), 0.9), ((0.0, 0.0, 0.75, 1.0), 0.6),
        ((0.05, 0.2, 0.6, 0.9), 1.0), ((0.12, 0.0, 0.42, 0.7), 1.2), ((0.0, 0.05, 0.65, 0.75), 0.75),
    ],
}
SEED = 0  # the row order of the index


@dataclass(frozen=True)
class Photo:
    file: str  # relative to the folder
    label: str
    source: str  # the package the original ships in
    photo: str  # the original's name
    width: int
    height: int

    @property
    def orientation(self) -> str:
        return "square" if self.width == self.height else "landscape" if self.width > self.height else "portrait"


@dataclass(frozen=True)
class PhotoSet:
    folder: Path  # the PNGs
    index: Path  # CSV: file,label,source,photo,orientation
    labels_file: Path  # the model's 1000 class names, one per line, in its own order
    photos: list[Photo]  # in the index's row order

    @property
    def paths(self) -> list[Path]:
        return [self.folder / p.file for p in self.photos]

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.photos]


def original(name: str) -> Image.Image:
    """One source photograph as RGB, read from the package that ships it."""
    if name == "china":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image("china.jpg")).convert("RGB")
    from skimage import data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        return Image.fromarray(left if name == "motorcycle_left" else right).convert("RGB")
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def _crop(img: Image.Image, box: tuple[float, float, float, float], scale: float) -> Image.Image:
    w, h = img.size
    x0, y0, x1, y1 = round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)
    region = img.crop((x0, y0, x1, y1))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    return region if size == region.size else region.resize(size, Image.Resampling.LANCZOS)


def build_photos(root: Path, model_classes: list[str]) -> PhotoSet:
    """Write the photographs, their index and the model's label list under ``root``."""
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(CLASSES) - set(model_classes))
    if unknown:
        raise ValueError(f"classes {unknown} are not among the model's class names")
    photos: list[Photo] = []
    for name, crops in CROPS.items():
        source, label = SOURCES[name]
        img = original(name)
        for i, (box, scale) in enumerate(crops):
            out = _crop(img, box, scale)
            file = f"{name}-{i:02d}.png"
            out.save(folder / file)
            photos.append(Photo(file, label, source, name, *out.size))
    random.Random(SEED).shuffle(photos)
    index = root / "photos.csv"
    with index.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "source", "photo", "orientation"])
        for p in photos:
            w.writerow([p.file, p.label, p.source, p.photo, p.orientation])
    labels_file = root / "labels.json"
    labels_file.write_text(json.dumps(model_classes))
    return PhotoSet(folder, index, labels_file, photos)
