"""The options of an image counterfactual search and the box of valid inputs it searches in (per-channel
bounds under per-channel normalisation, and the 8-bit grid of the image as shown and stored)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

import torch

Distance = Literal["l1", "l2"]


Bound = Union[float, Sequence[float]]


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of the search; the defaults suit inputs scaled to a unit-width range such as [0, 1].

    `input_range` is (low, high), each a number or one number per channel: under per-channel
    normalisation channel c is valid on [(0 - mean_c) / std_c, (1 - mean_c) / std_c]. `levels`, when
    set, is the number of representable values per channel (256 for 8-bit images): the returned
    point is snapped to that grid, so it is the image that would be shown or stored.
    """

    distance: Distance = "l2"
    input_range: tuple[Bound, Bound] = (0.0, 1.0)
    max_iter: int = 200
    binary_steps: int = 5
    lr: float = 0.01
    c_init: float = 1.0
    kappa: float = 0.0
    l2_weight: float = 0.0  # elastic-net L2 term added to the L1 objective (EAD's ridge part)
    restarts: int = 4
    init_noise: float = 0.05  # uniform start noise of restarts after the first, x (high - low)
    change_tol: float = 1e-3
    refine: bool = True
    diversity_weight: float = 0.0
    levels: int | None = None

    def validate(self) -> None:
        if self.distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {self.distance!r}")
        low, high = per_channel(self.input_range)
        if len(low) != len(high) or not all(
            math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in zip(low, high)
        ):
            raise ValueError(
                f"input_range must be (low, high) with low < high (numbers, or one per channel), got {self.input_range!r}"
            )
        if self.levels is not None and (isinstance(self.levels, bool) or int(self.levels) != self.levels
                                        or self.levels < 2):
            raise ValueError(f"levels must be None or an integer >= 2, got {self.levels!r}")
        for name in ("max_iter", "binary_steps", "restarts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "c_init"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("kappa", "l2_weight", "init_noise", "change_tol", "diversity_weight"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def per_channel(input_range: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low, high = input_range
    low = tuple(float(v) for v in (low if isinstance(low, (list, tuple)) else [low]))
    high = tuple(float(v) for v in (high if isinstance(high, (list, tuple)) else [high]))
    if len(low) == 1 and len(high) > 1:
        low = low * len(high)
    if len(high) == 1 and len(low) > 1:
        high = high * len(low)
    return low, high


@dataclass(frozen=True)
class Box:
    """The valid inputs: per-channel bounds [1, C, 1, 1] and an optional grid of `levels` values."""

    low: torch.Tensor
    high: torch.Tensor
    levels: int | None

    @classmethod
    def of(cls, opts: SearchOptions, channels: int, device: torch.device, dtype: torch.dtype) -> "Box":
        low, high = per_channel(opts.input_range)
        if len(low) not in (1, channels):
            raise ValueError(f"input_range gives {len(low)} channel bounds but the input has {channels} channels")
        shape = (1, len(low), 1, 1)
        return cls(torch.tensor(low, device=device, dtype=dtype).view(shape),
                   torch.tensor(high, device=device, dtype=dtype).view(shape), opts.levels)

    @property
    def width(self) -> torch.Tensor:
        return self.high - self.low

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(x, self.high), self.low)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The point as it is shown or stored: clamped per channel, then snapped to the grid."""
        x = self.clamp(x)
        if self.levels is None:
            return x
        step = self.width / (self.levels - 1)
        return self.clamp(self.low + torch.round((x - self.low) / step) * step)




def check_input(x: torch.Tensor, opts: SearchOptions, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    box = Box.of(opts, x.shape[1], torch.device("cpu"), torch.float64)
    xd = x.detach().to("cpu", torch.float64)
    tol = 1e-6 * box.width
    outside = (xd < box.low - tol) | (xd > box.high + tol)
    if bool(outside.any()):
        c = int(outside.nonzero()[0, 1])
        lo = float(box.low.expand(1, x.shape[1], 1, 1)[0, c])
        hi = float(box.high.expand(1, x.shape[1], 1, 1)[0, c])
        values = xd[:, c]
        raise ValueError(
            f"{name} has values in [{float(values.min()):.4g}, {float(values.max()):.4g}] in channel {c}, outside "
            f"input_range [{lo:.4g}, {hi:.4g}] of that channel: pass input_range=(low, high) matching the model's "
            "input scale (one bound per channel under per-channel normalisation)"
        )




def search_options(distance: Any, options: dict[str, Any]) -> SearchOptions:
    known = set(SearchOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid options: {sorted(known - {'distance'})}")
    if "input_range" in options:
        options = {**options, "input_range": _normalised_range(options["input_range"])}
    opts = SearchOptions(distance=distance, **options)
    opts.validate()
    return opts


def _normalised_range(value: Any) -> tuple[Bound, Bound]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be (low, high), got {value!r}") from None

    def one(bound: Any) -> Bound:
        if isinstance(bound, torch.Tensor):
            bound = bound.tolist()
        if isinstance(bound, (list, tuple)):
            return tuple(float(v) for v in bound)
        return float(bound)

    return one(low), one(high)
