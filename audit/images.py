"""Image decoding and validation for uploads and reference samples (type, size, channels)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from audit.models.loading import InputSpec

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
# The formats the README lists. Every decoder of outside bytes hands these to ``Image.open(formats=...)`` so
# Pillow never even tries its other plugins (EPS would start Ghostscript; PSD, ICO and the rest are attack
# surface nobody needs here).
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
FORMATS_TEXT = "PNG, JPEG, BMP, GIF, TIFF or WebP"


class ImageError(ValueError):
    """An uploaded image that cannot be used; the message says why."""


def decode_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS):  # noqa: ANN201
    """Bytes -> a fully decoded PIL image, or ImageError with a one-line reason."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        # Pillow refuses from about 179 Mpx (DecompressionBombError) and only warns from half that, where our
        # own pixel limit below refuses. (No warnings filter here: changing it is not thread-safe.)
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
            fmt = probe.format
            w, h = probe.size
    except UnidentifiedImageError:
        raise ImageError(f"the file is not an image in an accepted format ({FORMATS_TEXT} expected)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image declares too many pixels; the limit is {max_pixels} pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports some broken PNG chunks as SyntaxError
        raise ImageError(f"the image could not be read ({exc})") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"image format {fmt} is not accepted; use one of {', '.join(ALLOWED_FORMATS)}")
    if w * h > max_pixels:
        raise ImageError(f"the image is {w}x{h} pixels; the limit is {max_pixels} pixels")
    if w < 1 or h < 1:
        raise ImageError("the image has no pixels")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the image is corrupt or truncated ({exc})") from None
    if img.mode not in ("L", "RGB", "RGBA", "P", "LA", "I;16", "I", "F", "1", "CMYK", "YCbCr"):
        raise ImageError(f"unsupported image mode {img.mode}")
    return img


def image_to_tensor(image: Any, spec: InputSpec) -> torch.Tensor:
    """PIL image / numpy array / tensor -> float tensor [1, C, H, W] in [0, 1], prepared as the spec declares.

    PIL images and arrays go through ``InputSpec.prepare`` (the model's own resize and crop). A tensor is
    taken as already prepared pixels: only its channels are matched, and a tensor of another size is an
    error rather than a silent stretch."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        x = image.detach().float()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ImageError(f"expected an image tensor [C, H, W], got shape {tuple(image.shape)}")
    else:
        if isinstance(image, np.ndarray):
            arr = image
            if arr.dtype != np.uint8:
                arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8)
            image = Image.fromarray(arr.squeeze())
        if not isinstance(image, Image.Image):
            raise ImageError(f"cannot use {type(image).__name__} as an image")
        x = spec.prepare(image).unsqueeze(0)
    if x.shape[1] != spec.channels:
        if x.shape[1] == 1 and spec.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and spec.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ImageError(f"the image has {x.shape[1]} channels; the model takes {spec.channels}")
    if tuple(x.shape[-2:]) != (spec.height, spec.width):
        if spec.resize_mode != "exact":
            raise ImageError(f"an image tensor of {x.shape[-1]}x{x.shape[-2]} pixels was given where the model's "
                             f"view ({spec.width}x{spec.height}) was expected; prepare it with the model's spec")
        x = torch.nn.functional.interpolate(x, size=(spec.height, spec.width), mode="bilinear", align_corners=False)
    return x.contiguous()
