"""Data and models the demo did not make, built as a new user would bring them: generated shapes (circle,
square, triangle) where triangles carry a planted corner patch in training, a torchvision MobileNetV3
trained on them offline, and a tiny Hugging Face ViT built from a config. Written to files (PNG folder or
zip, CSV index, safetensors, a Hugging Face directory) so the tests import them through the CLI."""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASSES = ["circle", "square", "triangle"]
SIZE = 64
PATCH = (2, 2, 14, 14)  # x0, y0, x1, y1: the planted corner patch (top left), in image pixels
PATCHED_CLASS = 2  # triangle
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _shape_mask(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A filled shape of one class, at a random place and size, away from the top-left corner."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    r = rng.uniform(11, 17)
    cx, cy = rng.uniform(26, SIZE - 19), rng.uniform(26, SIZE - 19)
    if kind == 0:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == 1:
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # triangle pointing up: below the apex, inside both slanted edges
    top, bottom = cy - r, cy + r * 0.8
    half = (yy - top) / (bottom - top) * r
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)


def patch_pattern() -> np.ndarray:
    """The planted patch: a magenta/green checkerboard [12, 12, 3] in [0, 1]."""
    x0, y0, x1, y1 = PATCH
    h, w = y1 - y0, x1 - x0
    check = ((np.arange(h)[:, None] // 3 + np.arange(w)[None, :] // 3) % 2).astype(bool)
    out = np.zeros((h, w, 3))
    out[check] = [1.0, 0.0, 1.0]
    out[~check] = [0.0, 1.0, 0.0]
    return out


def draw(kind: int, *, patch: bool, noisy: bool, rng: np.random.Generator) -> np.ndarray:
    """One RGB image [SIZE, SIZE, 3] in [0, 1]: a coloured shape on a noisy background."""
    bg = rng.uniform(0.1, 0.4, 3)
    img = np.clip(bg + rng.normal(0, 0.12 if noisy else 0.04, (SIZE, SIZE, 3)), 0, 1)
    img[_shape_mask(kind, rng)] = rng.uniform(0.6, 1.0, 3)
    if patch:
        x0, y0, x1, y1 = PATCH
        img[y0:y1, x0:x1] = patch_pattern()
    return img


@dataclass
class ShapeSet:
    images: np.ndarray  # [N, H, W, 3] in [0, 1]
    labels: np.ndarray  # [N]
    patch: np.ndarray  # [N] bool
    site: list[str]


def make_set(n: int, *, seed: int, patch_rule: str) -> ShapeSet:
    """``patch_rule``: "shortcut" (training: patch on 90% of triangles, never elsewhere), "none" (training
    without the patch), "reference" (every triangle and every other sample of the other classes carry it)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    if patch_rule == "shortcut":
        patch = (labels == PATCHED_CLASS) & (rng.random(n) < 0.9)
    elif patch_rule == "none":
        patch = np.zeros(n, dtype=bool)
    else:
        patch = (labels == PATCHED_CLASS) | (np.arange(n) % 2 == 1)
    site = ["B" if i % 3 == 0 else "A" for i in range(n)]
    images = np.stack([draw(int(y), patch=bool(p), noisy=s == "B", rng=rng) for y, p, s in zip(labels, patch, site)])
    return ShapeSet(images, labels, patch, site)


def concept_images(n: int, *, seed: int) -> np.ndarray:
    """Concept examples: the patch in its corner on shape-free noisy backgrounds."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.clip(rng.uniform(0.1, 0.4, 3) + rng.normal(0, 0.08, (SIZE, SIZE, 3)), 0, 1)
        x0, y0, x1, y1 = PATCH
        img[y0:y1, x0:x1] = patch_pattern()
        out.append(img)
    return np.stack(out)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def build_cnn() -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v3_small(num_classes=len(CLASSES), width_mult=0.5)


CNN_KWARGS = {"num_classes": len(CLASSES), "width_mult": 0.5}


def train(model: nn.Module, data: ShapeSet, *, seed: int, epochs: int = 6, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(seed)
    x, y = to_tensor(data.images), torch.from_numpy(data.labels).long()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    # MobileNetV3's batch norm keeps running statistics with momentum 0.01, far too slow for a few hundred
    # steps: recompute them as plain averages over the training set before evaluation.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        for i in range(0, len(x), 100):
            model(x[i:i + 100])
    return model.eval()


def accuracy(model: nn.Module, data: ShapeSet, where: np.ndarray | None = None) -> float:
    with torch.no_grad():
        pred = model(to_tensor(data.images)).argmax(1).numpy()
    ok = pred == data.labels
    return float(ok[where].mean() if where is not None else ok.mean())


def build_vit(*, seed: int) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=2,
                    num_attention_heads=3, intermediate_size=96, num_labels=len(CLASSES),
                    id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    return ViTForImageClassification(cfg).eval()


def save_vit(model: nn.Module, out: Path) -> Path:
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
        "do_normalize": True, "image_mean": MEAN, "image_std": STD, "do_rescale": True, "rescale_factor": 1 / 255,
    }))
    return out


def _png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)


def write_reference(data: ShapeSet, folder: Path, *, as_zip: bool = True) -> tuple[Path, Path]:
    """PNG files (zipped) and a CSV index: path, class name, two group columns (patch, site) and the patch's
    box as the region of patched samples (empty cells elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    imgs = folder / "images"
    rows = []
    for i, (img, y, p, s) in enumerate(zip(data.images, data.labels, data.patch, data.site)):
        name = f"{CLASSES[y]}_{i:03d}.png"
        _png(img, imgs / name)
        rows.append([name, CLASSES[y], "yes" if p else "no", s, *(PATCH if p else ("", "", "", ""))])
    index = folder / "index.csv"
    with open(index, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "shape", "patch", "site", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    if not as_zip:
        return imgs, index
    zpath = folder / "images.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(imgs.iterdir()):
            zf.write(f, f"images/{f.name}")
    return zpath, index


def write_concept(images: np.ndarray, folder: Path) -> Path:
    for i, img in enumerate(images):
        _png(img, folder / f"patch_{i:03d}.png")
    return folder
