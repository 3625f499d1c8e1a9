"""The method base class and the three family bases (gradient, CAM, perturbation).

A method class declares what it is (name, label, options, whether it is stochastic, its cost)
and registers itself; its module only says what differs for its method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from audit.declarations import Evaluations

from . import registry
from .context import ExplainContext, PassCounter, SharedPass
from .options import SEED, AttributionOptions, Option

__all__ = [
    "AttributionMethod", "CamMethod", "MethodNotApplicable", "Evaluations", "ExplainContext", "Geometry", "GradientMethod",
    "PassCounter", "PerturbationMethod", "SharedPass", "fraction_range", "upsample",
]


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel) upsampling of [B, h, w] maps to the input size."""
    return F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


# ---- method bases -------------------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """What a cost estimate may depend on besides the options: the batch and input size, and the
    channel count of the CAM layer where it is known (None otherwise)."""

    batch: int
    height: int
    width: int
    layer_channels: int | None = None


BAD_DECLARATION = "attribution method {cls}: {problem}"
NOT_APPLICABLE = "{label} is not defined for {model}"
NEEDS_HOOKS = (
    "{label} reads a layer's feature maps through forward hooks, which a TorchScript module ({model}) does not "
    "take; register the model as weights with its architecture or as a torch.export archive to get it"
)


class MethodNotApplicable(ValueError):
    """A method that is not defined for this kind of model (not a failure); the message says why.

    ``explain`` skips such a method and reports the reason; ``attribute`` raises it."""


class AttributionMethod:
    """A method reads the context and returns raw attributions; it never normalises.

    Subclasses that set ``name`` register themselves. They declare as data: ``label`` (the name as
    people say it), ``options`` (every option that can change their result, with defaults: the
    method's own, shared ones such as ``seed`` and ``blur_sigma``, and the inference-path options
    ``fast``/``fast_min_rank_corr`` where they evaluate there), ``stochastic``, ``diagnostics``
    (names of what :meth:`diagnose` reports) and their cost (:meth:`evaluations`).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    paper: ClassVar[str] = ""  # the publication that defines the method, cited once in reports
    family: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    result_options: ClassVar[tuple[str, ...]] = ()  # derived from ``options`` on subclassing
    stochastic: ClassVar[bool] = False
    diagnostics: ClassVar[tuple[str, ...]] = ()
    listing: ClassVar[int] = 1000  # position in method listings (ties: registration order)
    fused: ClassVar[bool] = False  # served by the shared forward+backward pass
    needs_input_grad: ClassVar[bool] = False
    needs_layer: ClassVar[bool] = False
    needs_layer_grad: ClassVar[bool] = False
    needs_cam_features: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.result_options = tuple(o.name for o in cls.options if o.result)
        if "name" not in cls.__dict__:
            return  # a family base or helper class, not a method
        names = [o.name for o in cls.options]
        problems = []
        if not isinstance(cls.__dict__.get("label"), str):
            problems.append("set `label`, the method's name as people say it")
        if len(set(names)) != len(names):
            problems.append(f"options are declared twice: {names}")
        if "layer" in names:
            problems.append("`layer` is an argument of attribute(), not an option")
        if cls.stochastic and SEED not in cls.options:
            problems.append("a stochastic method must declare the `seed` option")
        owner = next(k for k in cls.__mro__ if "evaluations" in k.__dict__)
        if owner is AttributionMethod or (owner is GradientMethod and not cls.fused):
            problems.append("declare its cost: a classmethod `evaluations(opts, geometry) -> Evaluations`")
        if problems:
            raise TypeError(BAD_DECLARATION.format(cls=cls.__qualname__, problem="; ".join(problems)))
        registry.register(cls)

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """Whether the method is defined for this kind of model (listed in its cost table).

        A cheap structural check made before any forward; a method may still find at run time that
        it does not apply (CAM's head is verified numerically) and raise ``MethodNotApplicable``.
        """
        return True

    @classmethod
    def reads_layers(cls) -> bool:
        """Whether the method reads a layer (activations, their gradients, the CAM head) through hooks."""
        return cls.needs_layer or cls.needs_layer_grad or cls.needs_cam_features

    @classmethod
    def hook_reason(cls, model: nn.Module) -> str | None:
        """Why a layer method cannot run on ``model`` (a TorchScript module takes no hooks), else None."""
        if cls.reads_layers() and isinstance(model, torch.jit.ScriptModule):
            return NEEDS_HOOKS.format(label=cls.label, model=type(model).__name__)
        return None

    @classmethod
    def not_applicable_reason(cls, model: nn.Module) -> str | None:
        """None when :meth:`applies_to` holds, else a sentence saying why the method does not apply."""
        hooks = cls.hook_reason(model)
        if hooks is not None:
            return hooks
        if cls.applies_to(model):
            return None
        return NOT_APPLICABLE.format(label=cls.label, model=type(model).__name__)

    @classmethod
    def check_options(cls, opts: AttributionOptions) -> None:
        """Checks across several of the method's options (single values are checked by ``Option``)."""

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        """Model evaluations (samples) the method makes for ``geometry.batch`` inputs."""
        raise NotImplementedError(f"{cls.__name__} does not declare its cost")

    def diagnose(self) -> dict[str, Any]:
        """Diagnostics of the last run, by the names in ``diagnostics``."""
        return {}

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        raise NotImplementedError


def shared_pass_cost(cls: type[AttributionMethod], geometry: Geometry) -> Evaluations:
    """One forward (and one backward when gradients are needed) per input: the shared pass."""
    grad = cls.needs_input_grad or cls.needs_layer_grad
    return Evaluations(forward=geometry.batch, backward=geometry.batch if grad else 0)


class GradientMethod(AttributionMethod):
    """Input-space methods built from gradients of the target logit with respect to the input."""

    family = "gradient"

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        if cls.fused:
            return shared_pass_cost(cls, geometry)
        return super().evaluations(opts, geometry)

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        if self.fused:
            if ctx.shared is None or ctx.shared.input_grad is None:
                raise RuntimeError(f"{self.name} needs the shared gradient pass, which did not run")
            return self.from_gradient(ctx, ctx.shared.input_grad)
        return self.compute(ctx)

    def from_gradient(self, ctx: ExplainContext, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, ctx: ExplainContext) -> torch.Tensor:
        raise NotImplementedError


class CamMethod(AttributionMethod):
    """Class activation maps: ReLU(sum_k w_k A_k) on a layer's maps, upsampled to the input.

    Subclasses say how the channel weights w_k arise; the ReLU is the methods' own definition and
    the only post-processing (no min-max scaling).
    """

    family = "cam"
    fused = True
    needs_layer = True

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        return shared_pass_cost(cls, geometry)

    def features(self, ctx: ExplainContext) -> torch.Tensor:
        if ctx.shared is not None and ctx.shared.layer_act is not None:
            return ctx.shared.layer_act
        return ctx.layer_activations()

    def channel_weights(self, ctx: ExplainContext, acts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        acts = self.features(ctx)
        weights = self.channel_weights(ctx, acts)
        cam = torch.relu(torch.einsum("bk,bkhw->bhw", weights.float(), acts.float()))
        return upsample(cam, tuple(ctx.inputs.shape[-2:]))


class PerturbationMethod(AttributionMethod):
    """Methods that only evaluate the model on perturbed inputs (batched, under no_grad)."""

    family = "perturbation"


def fraction_range(x: torch.Tensor) -> torch.Tensor:
    """Per-sample value range (max - min over all non-batch dims), shaped for broadcasting."""
    flat = x.flatten(1)
    rng = flat.max(1).values - flat.min(1).values
    return rng.view(-1, *([1] * (x.ndim - 1)))


def isqrt_ceil(n: int) -> int:
    return int(math.ceil(math.sqrt(n)))
