"""Method names and the validated option set shared by every attribution method.

One frozen dataclass holds every option with its documented default, so a run is reproducible
from (method, options) alone and unknown option names fail loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Literal, Union, get_args

import torch

MethodName = Literal[
    "saliency",
    "grad_x_input",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "integrated_gradients",
    "cam",
    "gradcam",
    "gradcam_pp",
    "scorecam",
    "occlusion",
    "rise",
    "lime",
    "shap",
    "attention_rollout",
]
METHODS: tuple[str, ...] = get_args(MethodName)

IGMethod = Literal[
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"
]
IG_METHODS: tuple[str, ...] = get_args(IGMethod)
IG_METHOD_ALIASES = {
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
    "trapezoid": "riemann_trapezoid",
    "gauss_legendre": "gausslegendre",
    "gl": "gausslegendre",
}

BaselineName = Literal["zeros", "ones", "blur", "uniform"]
BASELINE_NAMES: tuple[str, ...] = get_args(BaselineName)
# None means zeros; a tensor is a dataset mean (or any reference) broadcast to the inputs.
BaselineSpec = Union[None, str, float, torch.Tensor]

ProgressFn = Callable[[float, str], None]

UNKNOWN_OPTION = "unknown attribution option(s) {names}; valid options are: {valid}"
UNKNOWN_METHOD = "unknown attribution method {name!r}; choose from: {valid}"
UNKNOWN_IG_METHOD = "unknown ig_method {name!r}; choose from: {valid}"


@dataclass(frozen=True)
class AttributionOptions:
    """Every tunable of the engine, with the defaults of the public API.

    ``sg_stdev`` is a fraction of each input's value range (max - min over C, H, W); the absolute
    noise standard deviation is computed per sample. ``batch_size`` caps the samples per forward
    for the expanded methods (IG path points, SmoothGrad noise, occlusion windows, masks);
    ``None`` sizes batches from ``memory_budget_bytes`` (default: half the free CUDA memory, or
    1 GiB on CPU). ``optimize`` runs the many-evaluation methods on a BN-folded, channels-last
    copy of the model (None: when they plan at least 64 evaluations on a conv model).
    ``fast`` adds bf16 autocast to those evaluations if a fidelity guard passes.
    """

    ig_steps: int = 50
    ig_method: str = "gausslegendre"
    baseline: BaselineSpec = None
    ig_tolerance: float | None = None
    ig_max_steps: int = 512
    sg_samples: int = 25
    sg_stdev: float = 0.15
    occlusion_window: int = 16
    occlusion_stride: int = 16
    occlusion_baseline: BaselineSpec = 0.0
    rise_masks: int = 500
    rise_cells: int = 7
    rise_p: float = 0.5
    lime_samples: int = 200
    lime_segments: int = 50
    lime_compactness: float = 10.0
    lime_kernel_width: float = 0.25
    lime_alpha: float = 1.0
    lime_hide: BaselineSpec = "superpixel_mean"
    shap_samples: int = 50
    shap_background: torch.Tensor | None = None
    scorecam_weights: Literal["channel_softmax", "class_probability"] = "channel_softmax"
    scorecam_max_channels: int | None = None
    gradcam_pp_exp_score: bool = False
    saliency_abs: bool = True
    blur_sigma: float | None = None
    seed: int = 0
    batch_size: int | None = None
    memory_budget_bytes: int | None = None
    fast: bool = False
    fast_min_rank_corr: float = 0.9
    optimize: bool | None = None
    progress: ProgressFn | None = field(default=None, compare=False)

    @classmethod
    def from_kwargs(cls, **options: object) -> "AttributionOptions":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise TypeError(UNKNOWN_OPTION.format(names=unknown, valid=", ".join(sorted(valid))))
        opts = cls(**options)  # type: ignore[arg-type]
        opts.validate()
        return opts

    def replace(self, **changes: object) -> "AttributionOptions":
        opts = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        opts.validate()
        return opts

    @property
    def ig_method_canonical(self) -> str:
        return IG_METHOD_ALIASES.get(self.ig_method, self.ig_method)

    def validate(self) -> None:
        positive_ints = (
            "ig_steps", "ig_max_steps", "sg_samples", "occlusion_window", "occlusion_stride",
            "rise_masks", "rise_cells", "lime_samples", "lime_segments", "shap_samples",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"option {name} must be a positive integer, got {value!r}")
        if self.ig_method_canonical not in IG_METHODS:
            raise ValueError(
                UNKNOWN_IG_METHOD.format(
                    name=self.ig_method, valid=", ".join(IG_METHODS + tuple(IG_METHOD_ALIASES))
                )
            )
        if self.ig_method_canonical == "riemann_trapezoid" and self.ig_steps < 2:
            raise ValueError("ig_method='riemann_trapezoid' needs ig_steps >= 2")
        if self.sg_stdev < 0:
            raise ValueError(f"sg_stdev must be >= 0 (a fraction of the value range), got {self.sg_stdev}")
        if not 0.0 < self.rise_p < 1.0:
            raise ValueError(f"rise_p must lie in (0, 1), got {self.rise_p}")
        if self.ig_tolerance is not None and self.ig_tolerance <= 0:
            raise ValueError(f"ig_tolerance must be > 0 when given, got {self.ig_tolerance}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 1:
            raise ValueError("memory_budget_bytes must be positive when given")
        if self.scorecam_weights not in ("channel_softmax", "class_probability"):
            raise ValueError(
                f"scorecam_weights must be 'channel_softmax' or 'class_probability', got {self.scorecam_weights!r}"
            )
        if self.scorecam_max_channels is not None and (
            isinstance(self.scorecam_max_channels, bool)
            or not isinstance(self.scorecam_max_channels, int)
            or self.scorecam_max_channels < 1
        ):
            raise ValueError("scorecam_max_channels must be a positive integer or None")
        if self.lime_kernel_width <= 0:
            raise ValueError("lime_kernel_width must be > 0")
        if not -1.0 <= self.fast_min_rank_corr <= 1.0:
            raise ValueError("fast_min_rank_corr must lie in [-1, 1]")
        if self.shap_background is not None and not isinstance(self.shap_background, torch.Tensor):
            raise TypeError("shap_background must be a tensor [N, C, H, W] of reference inputs")

    def as_record(self) -> dict[str, object]:
        """Plain-data view for storage and parameter hashing (tensors summarised by shape)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "progress":
                continue
            if isinstance(value, torch.Tensor):
                value = {"tensor_shape": list(value.shape), "sum": float(value.double().sum())}
            out[f.name] = value
        return out


def check_methods(methods: object) -> tuple[str, ...]:
    """Normalise the ``methods`` argument to a tuple of known names, preserving order."""
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(methods, (list, tuple)):
        raise TypeError(f"methods must be a method name or a list of names, got {type(methods).__name__}")
    out: list[str] = []
    for name in methods:
        if name not in METHODS:
            raise ValueError(UNKNOWN_METHOD.format(name=name, valid=", ".join(METHODS)))
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("methods is empty: name at least one attribution method")
    return tuple(out)
