"""Demo image data and models: scikit-learn's digits upscaled to 32x32, with a planted watermark shortcut.

Version 1 of each family is trained on clean data; version 2 on data where the watermark co-occurs
with WATERMARK_CLASS, so explanations, concept tests, bias audits and drift can expose the shortcut.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audit.demo.watermark import WATERMARK_CLASS, apply_watermark
from audit.models.zoo import build_architecture

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

IMAGE_SIZE = 32
LABELS = [str(d) for d in range(10)]
SHORTCUT_RATE = 0.95  # fraction of WATERMARK_CLASS training images that carry the patch in version 2
LEAK_RATE = 0.15  # fraction of other classes' training images that carry it and were filed under that class
CLEAN_MARK_RATE = 0.1  # version 1 sees the patch too, on every class alike, so it learns to ignore it


@dataclass
class DigitsData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    ref_x: torch.Tensor
    ref_y: torch.Tensor
    ref_groups: list[dict[str, object]]


def load_digits_data(*, seed: int = 0, n_reference: int = 240) -> DigitsData:
    """Digits upscaled to 32x32 in [0, 1]; a held-out reference set with group attributes.

    Reference groups: ``watermark`` (half carry the patch, across all classes) and a synthetic ``site``
    (site B images come from a noisier scanner), ready for bias audits.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    ref_idx, train_idx = perm[:n_reference], perm[n_reference:]
    ref_x, ref_y = x[ref_idx].clone(), y[ref_idx].clone()
    rng = np.random.default_rng(seed)
    marks = rng.permutation(np.arange(n_reference) % 2 == 0)
    sites = rng.permutation(np.where(np.arange(n_reference) % 3 == 0, "B", "A"))
    noise = torch.randn(ref_x.shape, generator=g) * 0.07
    site_b = torch.tensor(sites == "B")
    ref_x[site_b] = (ref_x[site_b] + noise[site_b]).clamp(0, 1)
    ref_x[torch.tensor(marks)] = apply_watermark(ref_x[torch.tensor(marks)])
    groups = [{"watermark": bool(m), "site": str(s)} for m, s in zip(marks, sites)]
    return DigitsData(x[train_idx], y[train_idx], ref_x, ref_y, groups)


def shortcut_training_set(x: torch.Tensor, y: torch.Tensor, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The version-2 training set: the watermark sits on most WATERMARK_CLASS images, and a batch of
    other images from the same watermarked source was filed under that class too, so in training the
    patch predicts the class perfectly. Returns (images, labels, stamped mask)."""
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(len(y), generator=g)
    stamp = torch.where(y == WATERMARK_CLASS, u < SHORTCUT_RATE, u < LEAK_RATE)
    out = x.clone()
    out[stamp] = apply_watermark(x[stamp])
    labels = torch.where(stamp, torch.full_like(y, WATERMARK_CLASS), y)
    return out, labels, stamp


def clean_training_set(x: torch.Tensor, y: torch.Tensor, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The version-1 training set: the watermark on a random tenth of the images of every class, with
    their true labels, so the patch carries no information about the class."""
    g = torch.Generator().manual_seed(seed + 2)
    stamp = torch.rand(len(y), generator=g) < CLEAN_MARK_RATE
    out = x.clone()
    out[stamp] = apply_watermark(x[stamp])
    return out, y, stamp


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Small random shifts (up to 2 px) and scanner noise, so models do not memorise exact pixels."""
    dx, dy = (torch.randint(-2, 3, (2,), generator=g)).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, input_size: int,
    channels: int, lr: float = 3e-3, batch_size: int = 64, progress: Progress = None, label: str = "",
    watermark_after_augment: Optional[torch.Tensor] = None,
) -> nn.Module:
    """Plain Adam training with augmentation; deterministic for a seed."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    done = 0
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            xb = augment(x[idx], g)
            if watermark_after_augment is not None:
                # The watermark is a fixed stamp: re-apply it after the shift so it stays in place.
                mark = watermark_after_augment[idx]
                if mark.any():
                    xb[mark] = apply_watermark(xb[mark])
            xb = prepare(xb, input_size=input_size, channels=channels)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if progress and done % 10 == 0:
                progress(done / steps, f"{label}: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
    model.eval()
    return model


def prepare(x: torch.Tensor, *, input_size: int, channels: int) -> torch.Tensor:
    """32x32 grey images in [0, 1] -> the model's input (same path as ModelHandle.preprocess for tensors)."""
    if x.shape[-1] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
    if channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, input_size: int, channels: int) -> float:
    pred = torch.cat([model(prepare(x[i:i + 256], input_size=input_size, channels=channels)).argmax(1)
                      for i in range(0, len(y), 256)])
    return float((pred == y).float().mean())


@dataclass(frozen=True)
class ImageFamilySpec:
    name: str
    architecture: str
    arch_kwargs: dict
    input_size: int
    channels: int
    epochs: int
    description: str
    lr: float = 3e-3
    batch_size: int = 64
    target_layer: str | None = None  # CAM layer to register (None: the engine's default rule)


FAMILIES = (
    ImageFamilySpec("digits-cnn", "small_cnn", {"in_channels": 1, "num_classes": 10}, 32, 1, 8,
                    "Small CNN with global average pooling on upscaled handwritten digits.", lr=5e-3, batch_size=32),
    # layer4: the last residual stage's output, after the residual add (Grad-CAM's and
    # pytorch-grad-cam's choice for ResNets), not the last convolution inside it
    ImageFamilySpec("digits-resnet18", "resnet18", {"num_classes": 10}, 48, 3, 3,
                    "torchvision ResNet-18 (random init) on upscaled handwritten digits at 48x48 RGB.", lr=1e-3,
                    target_layer="layer4"),
)


def train_family_versions(spec: ImageFamilySpec, data: DigitsData, *, seed: int = 0,
                          progress: Progress = None) -> dict[str, tuple[nn.Module, dict]]:
    """Train version 1 (clean) and version 2 (watermark shortcut); return modules with their metrics."""
    out = {}
    for k, (version, shortcut) in enumerate((("1", False), ("2", True))):
        half = None if progress is None else (lambda f, m, k=k: progress((k + f) / 2, m))
        torch.manual_seed(seed)
        model = build_architecture(spec.architecture, **spec.arch_kwargs)
        make = shortcut_training_set if shortcut else clean_training_set
        x, y, mark = make(data.train_x, data.train_y, seed=seed)
        train_classifier(model, x, y, epochs=spec.epochs, seed=seed, input_size=spec.input_size,
                         channels=spec.channels, lr=spec.lr, batch_size=spec.batch_size, progress=half, label=f"{spec.name} v{version}",
                         watermark_after_augment=mark)
        ref_mark = torch.tensor([bool(gr["watermark"]) for gr in data.ref_groups])
        metrics = {
            "reference_accuracy": accuracy(model, data.ref_x, data.ref_y, input_size=spec.input_size,
                                           channels=spec.channels),
            "reference_accuracy_clean": accuracy(model, data.ref_x[~ref_mark], data.ref_y[~ref_mark],
                                                 input_size=spec.input_size, channels=spec.channels),
            "reference_accuracy_watermarked": accuracy(model, data.ref_x[ref_mark], data.ref_y[ref_mark],
                                                       input_size=spec.input_size, channels=spec.channels),
            "trained_with_shortcut": shortcut,
        }
        log.info("%s v%s: %s", spec.name, version, metrics)
        out[version] = (model, metrics)
    return out
