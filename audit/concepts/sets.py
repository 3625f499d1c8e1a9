"""Concept and random example sets for TCAV: demo concept generators and reproducible random draws.

Every generator returns a float tensor [N, C, H, W] in [0, 1], built offline with numpy / scikit-image.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, Sequence

import numpy as np
import torch

from audit.demo.watermark import apply_watermark

TextureName = Literal["brick", "grass", "gravel", "noise"]

_ERR_COUNT = "{name} must be a positive integer, got {value!r}"


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(_ERR_COUNT.format(name=name, value=value))


def _to_tensor(images: np.ndarray, channels: int) -> torch.Tensor:
    """[N, H, W] float array -> [N, C, H, W] float32 tensor clipped to [0, 1]."""
    _check_count("channels", channels)
    arr = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None]
    return torch.from_numpy(np.repeat(arr, channels, axis=1).copy())


def _strokes(rng: np.random.Generator, size: int) -> np.ndarray:
    """A digit-like doodle: a few thick anti-aliased lines and an arc on a dark background."""
    from skimage.draw import ellipse_perimeter, line_aa
    from skimage.filters import gaussian

    img = np.zeros((size, size), dtype=np.float64)
    lo, hi = size // 6, size - size // 6
    for _ in range(int(rng.integers(1, 4))):
        r0, c0, r1, c1 = rng.integers(lo, hi, size=4)
        rr, cc, val = line_aa(int(r0), int(c0), int(r1), int(c1))
        img[rr, cc] = np.maximum(img[rr, cc], val)
    if rng.random() < 0.6:
        r, c = rng.integers(size // 3, 2 * size // 3, size=2)
        ry, rx = rng.integers(max(2, size // 10), max(3, size // 4), size=2)
        rr, cc = ellipse_perimeter(int(r), int(c), int(ry), int(rx), shape=img.shape)
        img[rr, cc] = 1.0
    img = gaussian(img, sigma=max(0.6, size / 40))
    return img / max(img.max(), 1e-8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    from skimage.filters import gaussian

    kind = int(rng.integers(0, 4))
    if kind == 0:  # flat grey
        return np.full((size, size), rng.uniform(0.0, 0.6))
    if kind == 1:  # white noise
        return rng.uniform(0.0, 0.6) + rng.normal(0.0, 0.15, (size, size))
    if kind == 2:  # smooth blotches
        smooth = gaussian(rng.normal(0.0, 1.0, (size, size)), sigma=size / 8)
        smooth = (smooth - smooth.min()) / max(np.ptp(smooth), 1e-8)
        return 0.6 * smooth
    return _strokes(rng, size)


def watermark_concept(
    n: int,
    *,
    size: int = 32,
    channels: int = 1,
    seed: int = 0,
    backgrounds: torch.Tensor | None = None,
) -> torch.Tensor:
    """The demo's planted watermark patch stamped on varied backgrounds, [n, C, size, size].

    Without ``backgrounds`` the patch lands on flat grey, noise, smooth blotches and digit-like
    strokes. Given a pool of reference images (``[M, C, H, W]`` in [0, 1]), the patch is stamped on
    ``n`` of them drawn with ``seed``: the cleanest concept set, differing from random draws of the
    same pool only by the patch.
    """
    _check_count("n", n)
    if backgrounds is not None:
        if not isinstance(backgrounds, torch.Tensor) or backgrounds.ndim != 4 or len(backgrounds) == 0:
            raise ValueError("backgrounds must be a non-empty float tensor [M, C, H, W] with values in [0, 1]")
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(backgrounds), (n,), generator=gen)
        return apply_watermark(backgrounds[idx].float())
    _check_count("size", size)
    rng = np.random.default_rng(seed)
    base = np.stack([_background(rng, size) for _ in range(n)])
    return apply_watermark(_to_tensor(base, channels))


def stripes_concept(n: int, *, size: int = 32, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Striped images, [n, C, size, size]: random orientation, period (3-8 px), phase and contrast."""
    _check_count("n", n)
    _check_count("size", size)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = []
    for _ in range(n):
        theta = rng.uniform(0.0, np.pi)
        period = rng.uniform(3.0, 8.0)
        phase = rng.uniform(0.0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
        # hard stripes half of the time: the concept is the stripe layout, not the waveform
        wave = np.sign(wave) if rng.random() < 0.5 else wave
        contrast = rng.uniform(0.5, 1.0)
        images.append(0.5 + 0.5 * contrast * wave)
    return _to_tensor(np.stack(images), channels)


def _texture_source(texture: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, texture)().astype(np.float64) / 255.0


def texture_concept(
    n: int,
    *,
    size: int = 32,
    channels: int = 1,
    seed: int = 0,
    texture: TextureName = "gravel",
) -> torch.Tensor:
    """Texture patches, [n, C, size, size]: random crops (with flips) of a scikit-image sample
    texture (``brick``, ``grass``, ``gravel``), or generated blob noise (``noise``)."""
    from skimage.transform import resize

    _check_count("n", n)
    _check_count("size", size)
    if texture not in ("brick", "grass", "gravel", "noise"):
        raise ValueError(f"texture must be one of 'brick', 'grass', 'gravel', 'noise', got {texture!r}")
    rng = np.random.default_rng(seed)
    images = []
    if texture == "noise":
        from skimage.data import binary_blobs
        from skimage.filters import gaussian

        for _ in range(n):
            blobs = binary_blobs(
                length=size,
                blob_size_fraction=rng.uniform(0.05, 0.15),
                volume_fraction=rng.uniform(0.3, 0.6),
                rng=int(rng.integers(2**31)),
            )
            images.append(gaussian(blobs.astype(np.float64), sigma=0.7))
    else:
        source = _texture_source(texture)
        height, width = source.shape[:2]
        for _ in range(n):
            crop = int(rng.integers(max(size, 48), min(height, width, 160) + 1))
            top = int(rng.integers(0, height - crop + 1))
            left = int(rng.integers(0, width - crop + 1))
            patch = source[top : top + crop, left : left + crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            images.append(resize(patch, (size, size), anti_aliasing=True))
    return _to_tensor(np.stack(images), channels)


def random_pool_sets(pool: torch.Tensor | Sequence[str], n_sets: int, set_size: int, *,
                     seed: int = 0) -> list[torch.Tensor] | list[list[str]]:
    """Draw ``n_sets`` random counterpart sets of ``set_size`` examples from a reference pool: a tensor of
    examples [M, ...] (images) or a list of sentences (a text model's reference texts).

    Reproducible for a given ``seed`` (the same draws for either kind of pool). Sets are disjoint when
    the pool is large enough (``n_sets * set_size <= len(pool)``); otherwise each set is drawn without
    replacement on its own.
    """
    text = isinstance(pool, (list, tuple)) and all(isinstance(t, str) for t in pool)
    if not text and (not isinstance(pool, torch.Tensor) or pool.ndim < 2):
        raise ValueError("pool must be a tensor of examples [M, ...] (e.g. the reference images) or a list of "
                         "sentences")
    _check_count("n_sets", n_sets)
    _check_count("set_size", set_size)
    if set_size > len(pool):
        raise ValueError(f"set_size {set_size} is larger than the pool ({len(pool)} examples)")
    gen = torch.Generator().manual_seed(seed)
    if n_sets * set_size <= len(pool):
        order = torch.randperm(len(pool), generator=gen)
        picks = [order[i * set_size : (i + 1) * set_size] for i in range(n_sets)]
    else:
        picks = [torch.randperm(len(pool), generator=gen)[:set_size] for _ in range(n_sets)]
    if text:
        return [[pool[i] for i in idx.tolist()] for idx in picks]
    return [pool[idx].clone() for idx in picks]


def set_sha256(examples: torch.Tensor | Sequence[str]) -> str:
    """SHA-256 of an example set: the raw bytes of a tensor, or the JSON of a list of sentences."""
    if isinstance(examples, torch.Tensor):
        # a byte view covers every dtype (bfloat16 has no numpy equivalent)
        data = examples.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    else:
        data = json.dumps(list(examples), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()
