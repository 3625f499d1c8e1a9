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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from audit.models.preprocess import InputSpec, PreprocessError  # noqa: F401 - re-exported
from audit.models.tasks import TASKS, Task  # noqa: F401 - re-exported where they always lived
from audit.models.zoo import build_architecture

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("state_dict", "torchscript", "hf", "exported", "import_path", "onnx")

SAFE_EXPORT_HINT = (
    "export only the weights instead: `safetensors.torch.save_file(model.state_dict(), 'model.safetensors')` "
    "(or `torch.save(model.state_dict(), 'weights.pt')`), or a TorchScript archive with `torch.jit.save`"
)


class ModelLoadError(ValueError):
    """A model file or directory that cannot be loaded safely; the message says why in one line."""


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


_HF_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def hf_image_input_spec(path: str | Path) -> Optional[dict[str, Any]]:
    """The preprocessing a Hugging Face image processor declares, from ``preprocessor_config.json``, as an
    input spec: its resize (exact ``height``/``width``, or ``shortest_edge`` with ConvNeXt's ``crop_pct``),
    centre crop, resample filter, rescale factor and mean/std, on torchvision's tensor kernels as the
    processors run them. None when the file is absent."""
    cfg_path = Path(path) / "preprocessor_config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{cfg_path.name} is not valid JSON ({exc.msg})") from None
    size, crop = cfg.get("size"), _size_of(cfg.get("crop_size")) if cfg.get("do_center_crop") else None
    spec: dict[str, Any] = {"channels": 3, "backend": "tensor", "crop_origin": "floor",
                            "interpolation": _HF_RESAMPLE.get(int(cfg.get("resample", 2)), "bilinear")}
    if isinstance(size, dict) and "shortest_edge" in size and not ("height" in size and "width" in size):
        edge = int(size["shortest_edge"])
        if cfg.get("crop_pct") is not None and edge < 384:  # ConvNeXt: resize edge / crop_pct, crop edge
            spec.update(resize_mode="shorter", resize=int(edge / float(cfg["crop_pct"])), height=edge, width=edge)
        elif crop is not None:
            spec.update(resize_mode="shorter", resize=edge, height=crop[0], width=crop[1])
        else:
            spec.update(height=edge, width=edge)
    else:
        hw = _size_of(size)
        if hw is None:
            raise ModelLoadError(f"{cfg_path.name} gives no usable image size (size: {size!r})")
        if crop is not None and crop != hw:
            spec.update(resize_hw=list(hw), height=crop[0], width=crop[1])
        else:
            spec.update(height=hw[0], width=hw[1])
    if cfg.get("do_resize") is False:
        raise ModelLoadError(f"{cfg_path.name} does not resize (do_resize: false); give the input spec instead")
    if cfg.get("do_normalize", True):
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        if mean is None or std is None:
            raise ModelLoadError(f"{cfg_path.name} normalises but gives no image_mean/image_std")
    else:
        mean, std = [0.0], [1.0]
    spec["mean"] = [float(v) for v in (mean if isinstance(mean, list) else [mean])]
    spec["std"] = [float(v) for v in (std if isinstance(std, list) else [std])]
    scale = float(cfg.get("rescale_factor", 1 / 255)) * 255 if cfg.get("do_rescale", True) else 255.0
    if abs(scale - 1.0) > 1e-6:
        spec["pixel_range"] = [0.0, scale]
    return spec


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
