"""Safe model loading and validation.

Weights come from safetensors or weights-only state dicts; TorchScript archives and Hugging Face
directories (safetensors, no remote code) are also accepted. Nothing uploaded is ever unpickled
with code execution: a file that needs code to load is refused with instructions to export safely.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from torch import nn

from audit.models.zoo import build_architecture

log = logging.getLogger(__name__)

Task = Literal["image-classification", "text-classification"]
TASKS: tuple[str, ...] = ("image-classification", "text-classification")
FORMATS: tuple[str, ...] = ("state_dict", "torchscript", "hf", "exported", "import_path", "onnx")

SAFE_EXPORT_HINT = (
    "export only the weights instead: `safetensors.torch.save_file(model.state_dict(), 'model.safetensors')` "
    "(or `torch.save(model.state_dict(), 'weights.pt')`), or a TorchScript archive with `torch.jit.save`"
)


class ModelLoadError(ValueError):
    """A model file or directory that cannot be loaded safely; the message says why in one line."""


@dataclass
class InputSpec:
    channels: int = 3
    height: int = 224
    width: int = 224
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        spec = cls(
            channels=int(d.get("channels", 3)), height=int(d.get("height", 224)), width=int(d.get("width", 224)),
            mean=[float(v) for v in d.get("mean", [0.0])], std=[float(v) for v in d.get("std", [1.0])],
        )
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "height": self.height, "width": self.width,
                "mean": list(self.mean), "std": list(self.std)}

    def validate(self) -> None:
        if self.channels not in (1, 3):
            raise ModelLoadError(f"input spec: channels must be 1 or 3, got {self.channels}")
        if not (8 <= self.height <= 1024 and 8 <= self.width <= 1024):
            raise ModelLoadError(f"input spec: size {self.height}x{self.width} is outside 8..1024")
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) not in (1, self.channels):
                raise ModelLoadError(f"input spec: {name} needs 1 or {self.channels} values, got {len(vals)}")
        if any(v <= 0 for v in self.std):
            raise ModelLoadError("input spec: std values must be positive")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def value_range(self) -> tuple[float, float]:
        """The range of normalised inputs that correspond to pixel values in [0, 1]."""
        lows = [(0.0 - m) / s for m, s in zip(self._per_channel(self.mean), self._per_channel(self.std))]
        highs = [(1.0 - m) / s for m, s in zip(self._per_channel(self.mean), self._per_channel(self.std))]
        return min(lows), max(highs)

    def _per_channel(self, vals: list[float]) -> list[float]:
        return vals * self.channels if len(vals) == 1 else vals


def select_device(preference: Optional[str] = None) -> torch.device:
    """`AUDIT_DEVICE=auto|cpu|cuda`: auto takes CUDA when present."""
    pref = (preference or os.environ.get("AUDIT_DEVICE", "auto")).lower()
    if pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"AUDIT_DEVICE must be auto, cpu or cuda, got {pref!r}")
    if pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("AUDIT_DEVICE=cuda but no CUDA device is available")
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


# ---------------------------------------------------------------- weight files

def sniff_file(path: Path) -> str:
    """Classify a weights file by its bytes: safetensors, zip (torch.save or TorchScript), pickle, unknown."""
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path.name} is empty")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if size >= 10 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= size - 8:
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelLoadError(f"{path.name} is a corrupt or truncated archive ({exc})") from None
        if any(n.split("/", 1)[-1].startswith("code/") for n in names):
            return "torchscript"
        if any(n.split("/", 1)[-1] == "archive_format" for n in names):
            return "pt2"
        return "torch_zip"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without running code: safetensors, or torch.load(weights_only=True)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"weights file not found: {path}")
    kind = sniff_file(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted bytes is "not valid"
            raise ModelLoadError(f"{path.name} is not a valid safetensors file ({_one_line(exc)})") from None
    if kind == "torchscript":
        raise ModelLoadError(f"{path.name} is a TorchScript archive: register it with --torchscript, not as weights")
    if kind == "pt2":
        raise ModelLoadError(f"{path.name} is a torch.export archive: register it with --exported, not as weights")
    if kind in ("torch_zip", "pickle"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelLoadError(
                f"{path.name} needs code to unpickle (a pickled full model or custom object) and was refused "
                f"without running it; {SAFE_EXPORT_HINT}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - untrusted bytes: every other failure means a damaged file
            raise ModelLoadError(f"{path.name} is corrupt or truncated ({_one_line(exc)})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ModelLoadError(f"{path.name} does not hold a state dict of tensors; {SAFE_EXPORT_HINT}")
        return obj
    raise ModelLoadError(f"{path.name} is not a safetensors, state-dict or TorchScript file")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def build_from_state_dict(architecture: str, state: dict[str, torch.Tensor], arch_kwargs: dict[str, Any]) -> nn.Module:
    try:
        module = build_architecture(architecture, **arch_kwargs)
    except TypeError as exc:
        raise ModelLoadError(f"architecture {architecture!r} does not take {arch_kwargs}: {_one_line(exc)}") from None
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    return fit_state_dict(module, state, architecture)


def fit_state_dict(module: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> nn.Module:
    """Load ``state`` into ``module`` strictly; refuse (one line) keys or shapes that do not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} with other shapes (e.g. {mismatched[0]})")
        raise ModelLoadError(f"weights do not fit architecture {architecture!r}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
    return module


def load_torchscript(path: str | Path) -> nn.Module:
    path = Path(path)
    kind = sniff_file(path)
    if kind != "torchscript":
        raise ModelLoadError(f"{path.name} is not a TorchScript archive (looks like {kind})")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"{path.name} could not be loaded as TorchScript ({_one_line(exc)})") from None


def _check_hf_dir(path: Path) -> None:
    """Refuse what must not be loaded before transformers touches the directory."""
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory (config.json missing)")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has no .safetensors weights; save with save_pretrained(safe_serialization=True)")
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("auto_map"):
        raise ModelLoadError(f"{path} asks for custom remote code (auto_map); only built-in architectures are loaded")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_hf_dir(path: str | Path) -> tuple[nn.Module, Any]:
    """A Hugging Face sequence classifier from a local directory: safetensors only, no remote code."""
    path = Path(path)
    _check_hf_dir(path)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=False, local_files_only=True,
            attn_implementation="eager",
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{path.name}: could not load the Hugging Face model ({_one_line(exc)})") from None
    return model, tokenizer


class HFImageClassifier(nn.Module):
    """A Hugging Face image classifier as the engine expects it: ``forward(x)`` returns the logits.

    The wrapped model is the child ``model``, so its layers keep their names under that prefix
    (``model.vit.encoder.layer.11.layernorm_before``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def load_hf_image_dir(path: str | Path) -> HFImageClassifier:
    """A Hugging Face image classifier (ViT, DeiT, Swin, ConvNeXt, ...): safetensors only, no remote code."""
    path = Path(path)
    _check_hf_dir(path)
    from transformers import AutoModelForImageClassification

    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=False, local_files_only=True,
            attn_implementation="eager",
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{path.name}: could not load the Hugging Face image model ({_one_line(exc)})") from None
    return HFImageClassifier(model.eval())


def hf_labels(path: str | Path) -> Optional[list[str]]:
    """Class names from ``config.json``'s ``id2label`` in index order, or None when it has none."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        return None
    id2label = json.loads(cfg_path.read_text()).get("id2label") or {}
    try:
        return [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else None
    except ValueError:
        raise ModelLoadError(f"{cfg_path}: id2label keys must be class indices") from None


def _size_of(value: Any) -> Optional[tuple[int, int]]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:  # a square crop of the short side, as ConvNeXt processors use
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


def hf_image_input_spec(path: str | Path) -> Optional[dict[str, Any]]:
    """The input spec a Hugging Face image processor implies, from ``preprocessor_config.json``.

    Size: ``crop_size`` when the processor centre-crops, else ``size``; mean/std: ``image_mean`` /
    ``image_std`` (0 and 1 when it does not normalise); 3 channels. None when the file is absent.
    """
    cfg_path = Path(path) / "preprocessor_config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{cfg_path.name} is not valid JSON ({exc.msg})") from None
    size = _size_of(cfg.get("crop_size")) if cfg.get("do_center_crop") else None
    size = size or _size_of(cfg.get("size"))
    if size is None:
        raise ModelLoadError(f"{cfg_path.name} gives no usable image size (size: {cfg.get('size')!r})")
    if cfg.get("do_normalize", True):
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        if mean is None or std is None:
            raise ModelLoadError(f"{cfg_path.name} normalises but gives no image_mean/image_std")
    else:
        mean, std = [0.0], [1.0]
    mean = [float(v) for v in (mean if isinstance(mean, list) else [mean])]
    std = [float(v) for v in (std if isinstance(std, list) else [std])]
    return {"channels": 3, "height": size[0], "width": size[1], "mean": mean, "std": std}


def find_default_target_layer(module: nn.Module, input_shape: Optional[tuple[int, int, int]] = None) -> Optional[str]:
    """The layer CAM-family methods read by default: the engine's own rule, so a registered
    handle and ``attribute(..., layer=None)`` agree (see ``audit.attribution.default_layer``).

    CNNs: the output of the last convolutional block, the final feature map before global pooling
    (torchvision ResNets: ``layer4``), found by one probe forward of a zero input of
    ``input_shape`` (C, H, W; default: C from the first convolution, 224 x 224). Vision
    transformers: the last encoder block's input norm. None when the model has neither.
    """
    from audit.attribution.layers import default_layer

    sample = None
    if input_shape is not None:
        param = next(module.parameters(), None)
        sample = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    try:
        return default_layer(module, sample).name
    except ValueError:  # no convolutional feature map: CAM methods do not apply
        return None


def check_image_model(module: nn.Module, spec: InputSpec, labels: list[str]) -> None:
    """Run one forward pass on a dummy input; the output must be [1, len(labels)] and finite."""
    x = torch.zeros(1, *spec.shape)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:  # noqa: BLE001 - any failure here means the spec does not fit the model
        raise ModelLoadError(f"input spec {spec.shape} does not fit the model ({_one_line(exc)})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        raise ModelLoadError(f"the model must return logits [batch, classes]; got {getattr(out, 'shape', type(out))}")
    if out.shape[1] != len(labels):
        raise ModelLoadError(f"the model has {out.shape[1]} outputs but {len(labels)} labels were given")
    if not torch.isfinite(out).all():
        raise ModelLoadError("the model returns NaN or infinite outputs on a blank input")


def validate_labels(labels: Optional[list[str]]) -> list[str]:
    if not labels:
        raise ModelLoadError("labels are missing: give one class name per model output")
    labels = [str(v).strip() for v in labels]
    if any(not v for v in labels):
        raise ModelLoadError("labels contain an empty name")
    if len(set(labels)) != len(labels):
        raise ModelLoadError("labels contain duplicates")
    return labels


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"labels file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="strict").strip()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{path.name} is not valid JSON ({exc.msg})") from None
        return validate_labels(data if isinstance(data, list) else None)
    return validate_labels([line for line in text.splitlines() if line.strip()])


PreprocessFn = Callable[[Any], torch.Tensor]
