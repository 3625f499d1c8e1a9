"""A model version's declared preprocessing (``InputSpec``) and the one function that applies it.

An image reaches the model as production prepares it: resized (exactly, or its shorter side, keeping the
aspect ratio), centre-cropped, scaled to the declared value range and normalised. Regions declared in the
image's own pixels move with the same geometry (``InputSpec.view_of``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
RESIZE_MODES = ("exact", "shorter")
# Which resampler runs: Pillow's (torchvision's transforms applied to a PIL image) or torchvision's tensor
# kernels on the 8-bit image (torchvision on tensors, Hugging Face image processors). They differ by up to
# a few grey levels, so the declared one is the one production uses.
BACKENDS = ("pil", "tensor")
# Where a centre crop starts when the margin is odd: torchvision rounds half to even, Hugging Face image
# processors take the floor (a one-pixel shift, measured in tests/models/test_preprocess.py).
CROP_ORIGINS = ("round", "floor")


class PreprocessError(ValueError):
    """An input spec that cannot describe a preprocessing; the message says which field."""


@dataclass(frozen=True)
class View:
    """Where an image of size (width, height) lands in the model's input: scale factors of the resize and
    the crop's top-left corner in resized pixels."""

    scale_x: float
    scale_y: float
    left: int
    top: int
    width: int  # the model's input width
    height: int

    def box(self, box: list[int]) -> Optional[list[int]]:
        """A pixel box [x0, y0, x1, y1] of the source image -> the same box in the model's input, grown to
        whole pixels and clipped to it; None when the crop leaves none of it in view."""
        x0, y0, x1, y1 = box
        nx0 = math.floor(x0 * self.scale_x) - self.left
        ny0 = math.floor(y0 * self.scale_y) - self.top
        nx1 = math.ceil(x1 * self.scale_x) - self.left
        ny1 = math.ceil(y1 * self.scale_y) - self.top
        nx0, ny0 = max(0, nx0), max(0, ny0)
        nx1, ny1 = min(self.width, nx1), min(self.height, ny1)
        if nx1 <= nx0 or ny1 <= ny0:
            return None
        return [nx0, ny0, nx1, ny1]


@dataclass
class InputSpec:
    """What the model takes (channels, height, width) and how an image is prepared for it.

    ``resize_mode``: ``exact`` resizes to height x width (aspect ratio not kept); ``shorter`` resizes the
    shorter side to ``resize`` keeping the aspect ratio, then centre-crops height x width (torchvision's
    classification transforms). ``pixel_range``: what pixel values 0 and 255 become before normalisation."""

    channels: int = 3
    height: int = 224
    width: int = 224
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    resize_mode: str = "exact"
    resize: Optional[int] = None  # the shorter side, with resize_mode "shorter"
    resize_hw: Optional[tuple[int, int]] = None  # exact mode: resize to this, then centre-crop height x width
    interpolation: str = "bilinear"
    antialias: bool = True
    backend: str = "pil"
    crop_origin: str = "round"
    pixel_range: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        try:
            spec = cls(
                channels=int(d.get("channels", 3)), height=int(d.get("height", 224)), width=int(d.get("width", 224)),
                mean=[float(v) for v in d.get("mean", [0.0])], std=[float(v) for v in d.get("std", [1.0])],
                resize_mode=str(d.get("resize_mode", "exact")),
                resize=None if d.get("resize") is None else int(d["resize"]),
                resize_hw=None if d.get("resize_hw") is None else tuple(int(v) for v in d["resize_hw"]),
                interpolation=str(d.get("interpolation", "bilinear")), antialias=bool(d.get("antialias", True)),
                backend=str(d.get("backend", "pil")), crop_origin=str(d.get("crop_origin", "round")),
                pixel_range=tuple(float(v) for v in d.get("pixel_range", (0.0, 1.0))),  # type: ignore[arg-type]
            )
        except (TypeError, ValueError) as exc:
            raise PreprocessError(f"input spec: {exc}") from None
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.channels, "height": self.height, "width": self.width,
                               "mean": list(self.mean), "std": list(self.std)}
        # Only what differs from the old exact-resize default, so specs stored before keep their form.
        if self.resize_mode != "exact":
            out.update(resize_mode=self.resize_mode, resize=self.resize)
        if self.resize_hw is not None:
            out["resize_hw"] = list(self.resize_hw)
        if self.interpolation != "bilinear":
            out["interpolation"] = self.interpolation
        if not self.antialias:
            out["antialias"] = False
        if self.backend != "pil":
            out["backend"] = self.backend
        if self.crop_origin != "round":
            out["crop_origin"] = self.crop_origin
        if tuple(self.pixel_range) != (0.0, 1.0):
            out["pixel_range"] = list(self.pixel_range)
        return out

    def validate(self) -> None:
        if self.channels not in (1, 3):
            raise PreprocessError(f"input spec: channels must be 1 or 3, got {self.channels}")
        if not (8 <= self.height <= 1024 and 8 <= self.width <= 1024):
            raise PreprocessError(f"input spec: size {self.height}x{self.width} is outside 8..1024")
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) not in (1, self.channels):
                raise PreprocessError(f"input spec: {name} needs 1 or {self.channels} values, got {len(vals)}")
        if any(v <= 0 for v in self.std):
            raise PreprocessError("input spec: std values must be positive")
        if self.resize_mode not in RESIZE_MODES:
            raise PreprocessError(f"input spec: resize_mode must be one of {', '.join(RESIZE_MODES)}")
        if self.resize_mode == "shorter" and not (self.resize and 8 <= self.resize <= 4096):
            raise PreprocessError("input spec: resizing the shorter side needs a size between 8 and 4096")
        if self.resize_hw is not None and not (len(self.resize_hw) == 2 and all(8 <= v <= 4096 for v in self.resize_hw)):
            raise PreprocessError("input spec: resize_hw must be two sizes between 8 and 4096")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(f"input spec: interpolation must be one of {', '.join(INTERPOLATIONS)}")
        if self.backend not in BACKENDS:
            raise PreprocessError(f"input spec: backend must be one of {', '.join(BACKENDS)}")
        if self.crop_origin not in CROP_ORIGINS:
            raise PreprocessError(f"input spec: crop_origin must be one of {', '.join(CROP_ORIGINS)}")
        lo, hi = self.pixel_range
        if not hi > lo:
            raise PreprocessError(f"input spec: value range [{lo}, {hi}] must be increasing")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def describe(self) -> str:
        """One line a person reads (report's model section, Registry)."""
        if self.resize_mode == "shorter":
            geo = f"resize shorter side to {self.resize}, centre-crop {self.height}x{self.width}"
        elif self.resize_hw is not None:
            geo = (f"resize to {self.resize_hw[0]}x{self.resize_hw[1]} (aspect ratio not kept), centre-crop "
                   f"{self.height}x{self.width}")
        else:
            geo = f"resize to {self.height}x{self.width} (aspect ratio not kept)"
        geo += f", {self.interpolation}" + ("" if self.antialias else " without antialiasing")
        lo, hi = self.pixel_range
        fmt = lambda vals: ", ".join(f"{v:g}" for v in vals)  # noqa: E731
        return (f"{geo}; {'greyscale' if self.channels == 1 else 'RGB'}; pixels scaled to [{lo:g}, {hi:g}]; "
                f"mean {fmt(self.mean)}, std {fmt(self.std)}")

    # ---------------------------------------------------------------- values

    def _per_channel(self, vals: list[float]) -> list[float]:
        return vals * self.channels if len(vals) == 1 else vals

    def _affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """normalised = a * pixel + b for pixel values in [0, 1], per channel."""
        lo, hi = self.pixel_range
        mean = torch.tensor(self._per_channel(self.mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self._per_channel(self.std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (hi - lo) / std, (lo - mean) / std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] [B, C, H, W] -> what the model takes."""
        if tuple(self.pixel_range) == (0.0, 1.0) and x.shape[1] == self.channels:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            return (x - mean) / std  # the historical form, bit for bit
        a, b = self._affine(x)
        return x * a + b

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of ``normalize``: model input -> pixels in [0, 1]."""
        a, b = self._affine(x)
        return (x - b) / a

    def value_range(self) -> tuple[float, float]:
        """The range of normalised inputs that correspond to pixel values in [0, 1]."""
        lo, hi = self.pixel_range
        means, stds = self._per_channel(self.mean), self._per_channel(self.std)
        lows = [(lo - m) / s for m, s in zip(means, stds)]
        highs = [(hi - m) / s for m, s in zip(means, stds)]
        return min(lows), max(highs)

    # ---------------------------------------------------------------- geometry

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        if self.resize_mode == "exact":
            return (self.resize_hw[1], self.resize_hw[0]) if self.resize_hw else (self.width, self.height)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def _crop_origin(self, size: int, crop: int) -> int:
        return int(round((size - crop) / 2.0)) if self.crop_origin == "round" else (size - crop) // 2

    def view_of(self, width: int, height: int) -> View:
        """Where an image of (width, height) lands in the model's input."""
        rw, rh = self._resized_size(width, height)
        return View(rw / width, rh / height, self._crop_origin(rw, self.width), self._crop_origin(rh, self.height),
                    self.width, self.height)

    def _pil_filter(self) -> int:
        from PIL import Image

        return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[self.interpolation]

    def _crop(self, arr: np.ndarray, view: View) -> np.ndarray:
        """Centre crop of an [H, W(, C)] array, zero-padded where the crop is larger than the image."""
        h, w = arr.shape[:2]
        out = np.zeros((self.height, self.width) + arr.shape[2:], dtype=arr.dtype)
        top, left = view.top, view.left
        ys, xs = max(0, top), max(0, left)
        ye, xe = min(h, top + self.height), min(w, left + self.width)
        if ye > ys and xe > xs:
            out[ys - top:ye - top, xs - left:xe - left] = arr[ys:ye, xs:xe]
        return out

    def _resize_tensor(self, image: Any, rw: int, rh: int) -> np.ndarray:
        """torchvision's tensor kernels on the 8-bit image (rounded back to 8 bits, as they return uint8)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        t = TF.pil_to_tensor(image)
        if (rw, rh) != image.size:
            mode = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
                    "bicubic": InterpolationMode.BICUBIC}[self.interpolation]
            t = TF.resize(t, [rh, rw], interpolation=mode, antialias=self.antialias)
        arr = t.permute(1, 2, 0).numpy()
        return arr[..., 0] if arr.shape[-1] == 1 else arr

    def prepare(self, image: Any) -> torch.Tensor:
        """A PIL image -> the model's view of it as pixels [C, H, W] in [0, 1] (float32, not normalised)."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise TypeError(f"prepare takes a PIL image, got {type(image).__name__}")
        if image.mode in ("I", "I;16", "F"):  # wide grey: scale to 8 bits rather than clip
            arr = np.asarray(image, dtype=np.float64)
            hi = arr.max() if arr.max() > 0 else 1.0
            image = Image.fromarray((arr / hi * 255).round().astype(np.uint8))
        image = image.convert("L" if self.channels == 1 else "RGB")
        view = self.view_of(*image.size)
        rw, rh = self._resized_size(*image.size)
        if self.backend == "tensor":
            arr = self._resize_tensor(image, rw, rh)
        else:
            if (rw, rh) != image.size:
                image = image.resize((rw, rh), self._pil_filter())
            arr = np.asarray(image)
        if arr.shape[:2] != (self.height, self.width):
            arr = self._crop(arr, view)
        x = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).float().div(255.0)
        return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()

    def prepare_mask(self, mask: np.ndarray) -> Optional[np.ndarray]:
        """A boolean [h, w] mask of the source image -> the same pixels in the model's view (a pixel belongs
        to the region when the region touches it, the project's one scaling rule); None when the crop leaves
        none of it."""
        from audit.regions import scale_mask

        h, w = mask.shape
        rw, rh = self._resized_size(w, h)
        arr = np.asarray(mask, dtype=bool)
        if (rw, rh) != (w, h):
            arr = scale_mask(arr, (rh, rw))
        if self.resize_mode == "shorter":
            arr = self._crop(arr, self.view_of(w, h))
        return arr if arr.any() else None

    def region_in_view(self, region: Any, width: int, height: int) -> Optional[Any]:
        """A region (box or mask) of a (width, height) image -> the model's view of it, or None when out of
        view."""
        if region is None:
            return None
        if isinstance(region, np.ndarray):
            return self.prepare_mask(region)
        return self.view_of(width, height).box([int(v) for v in region])
