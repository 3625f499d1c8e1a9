"""The explanation-quality metric base: each metric declares what it is as data and how it is computed.

A concrete subclass (one that sets ``name``) registers itself when its module is imported; reports, the
naming module and the pages render any metric from its declaration (label, paper, direction, category).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping, get_args

import torch
from torch import nn

from audit.attribution import attribute

from . import registry

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "robustness", "randomisation", "axiomatic", "localisation"]
Modality = Literal["image", "text"]

# An explainer maps (model, inputs [B, C, H, W], targets [B]) to attributions.
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

BAD_DECLARATION = "quality metric {cls}: {problem}"
UNKNOWN_SETTING = "quality metric {name!r} has no setting(s) {names}; it declares: {valid}"
BAD_RESULT = "quality metric {name!r} returned {got} scores for a batch of {batch}; give one per sample"


@dataclass
class Scores:
    """One score per sample (NaN where the metric is undefined for it), and the metric that gave them."""

    values: torch.Tensor  # [B]
    spec: type["QualityMetric"]

    @property
    def mean(self) -> float:
        return float(self.values.mean())


class QualityMetric:
    """An explanation-quality metric in the Quantus manner: declaration as class data, settings on the
    instance, and :meth:`compute` from (model, inputs, targets, maps).

    Declaration: ``name`` (identifier in results and JSON), ``label`` (as people say it), ``paper`` (the
    publication, cited once in reports), ``direction`` ("higher"/"lower" is better), ``category``,
    ``modalities`` (the inputs it applies to: "image", "text"), ``value_range``, ``description`` (what the
    number is, one clause), ``settings`` (its hyperparameters and their defaults; an instance may override
    them), ``by_default`` (scored on every set of maps: the report's quality pass and the Explain page's
    Faithfulness tab), ``aliases`` (other identifiers it answers to in citations) and ``listing`` (its
    position in listings and report tables).

    ``compute`` returns a result whose ``values`` hold one score per sample; image metrics read ``inputs``
    [B, C, H, W], ``targets`` [B] and ``maps`` [B, C, H, W] or [B, H, W]; metrics that need more (regions,
    an explainer) take it as a keyword or a setting.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    paper: ClassVar[str]
    direction: ClassVar[Direction]
    category: ClassVar[Category]
    modalities: ClassVar[tuple[Modality, ...]] = ("image",)
    value_range: ClassVar[tuple[float, float]]
    description: ClassVar[str]
    settings: ClassVar[Mapping[str, Any]] = {}
    by_default: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ()
    listing: ClassVar[int] = 1000  # position in listings (ties: registration order)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # a family base, not a metric
        problems = [f"set `{attr}`" for attr in ("label", "paper", "description")
                    if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr)]
        if getattr(cls, "direction", None) not in get_args(Direction):
            problems.append(f"`direction` must be one of {get_args(Direction)}")
        if getattr(cls, "category", None) not in get_args(Category):
            problems.append(f"`category` must be one of {get_args(Category)}")
        if not cls.modalities or not set(cls.modalities) <= set(get_args(Modality)):
            problems.append(f"`modalities` must name some of {get_args(Modality)}")
        lo_hi = getattr(cls, "value_range", None)
        if not (isinstance(lo_hi, tuple) and len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1]):
            problems.append("`value_range` must be a (low, high) pair")
        if cls.compute is QualityMetric.compute:
            problems.append("say how it is computed: `compute(self, model, inputs, targets, maps, **data)`")
        if problems:
            raise TypeError(BAD_DECLARATION.format(cls=cls.__qualname__, problem="; ".join(problems)))
        registry.register(cls)

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            raise TypeError(UNKNOWN_SETTING.format(name=self.name, names=unknown, valid=", ".join(self.settings) or "none"))
        self.config: dict[str, Any] = {**self.settings, **settings}

    @classmethod
    def configured(cls, values: Mapping[str, Any]) -> "QualityMetric":
        """An instance with those of ``values`` that this metric declares (the rest are another metric's)."""
        return cls(**{k: v for k, v in values.items() if k in cls.settings})

    def __call__(self, model: nn.Module | None, inputs: Any, targets: Any, maps: Any, **data: Any) -> Any:
        res = self.compute(model, inputs, targets, maps, **data)
        batch = len(inputs) if inputs is not None else len(maps)
        if res.values.ndim != 1 or res.values.shape[0] != batch:
            raise ValueError(BAD_RESULT.format(name=self.name, got=tuple(res.values.shape), batch=batch))
        return res

    def compute(self, model: nn.Module | None, inputs: Any, targets: Any, maps: Any, **data: Any) -> Any:
        """The metric's result for ``maps`` (explanations of ``inputs`` for ``targets``); ``.values`` [B]."""
        raise NotImplementedError

    @classmethod
    def better(cls, a: float, b: float) -> bool:
        """True when score ``a`` is better than ``b`` under this metric's direction."""
        return a > b if cls.direction == "higher" else a < b

    @classmethod
    def better_text(cls) -> str:
        return f"{cls.direction} is better"

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The declaration as plain data (for pages and JSON)."""
        return {"name": cls.name, "label": cls.label, "paper": cls.paper, "direction": cls.direction,
                "better": cls.better_text(), "category": cls.category, "modalities": list(cls.modalities),
                "value_range": list(cls.value_range), "description": cls.description, "by_default": cls.by_default,
                **({"curve": cls.curve_words()} if issubclass(cls, CurveMetric) else {})}


class CurveMetric(QualityMetric):
    """A metric read from a curve over a fraction of the input changed; its result carries the curve
    (``fractions`` [S + 1], ``curves`` [B, S + 1]). Declares how the curve reads in a figure."""

    curve_title: ClassVar[str]
    curve_axis: ClassVar[str]
    curve_values: ClassVar[str]

    @classmethod
    def curve_words(cls) -> dict[str, str]:
        return {"title": cls.curve_title, "axis": cls.curve_axis, "values": cls.curve_values}


def method_explainer(method: str, *, layer: nn.Module | str | None = None, **options: object) -> Explainer:
    """An :data:`Explainer` running one engine method with fixed options."""

    def run(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return attribute(model, inputs, targets, [method], layer, **options)[method]  # type: ignore[list-item]

    run.__name__ = method
    return run
