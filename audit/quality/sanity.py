"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018, arXiv:1810.03292).

Layers are re-initialised from the top (output) down, cumulatively, on a copy of the model; a
method whose maps still rank-correlate with the trained model's maps is flagged.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from audit.attribution import explain, spearman
from audit.attribution.layers import parameterised_modules, resolve_layer

from ._eval import prepare
from .spec import RANDOMISATION, Explainer, MetricSpec


@dataclass
class SanityResult:
    """Per method: mean Spearman correlation with the trained model's maps after each step."""

    steps: list[str]  # the layer group randomised at each step (cumulative, top first)
    correlations: dict[str, list[float]]
    per_sample: dict[str, torch.Tensor]  # [steps, B]
    flagged: dict[str, bool]
    threshold: float
    spec: MetricSpec = field(default=RANDOMISATION)


def randomise_module(module: nn.Module, seed: int) -> None:
    """Re-initialise one module's own parameters (its architecture's init), seeded."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in module.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.normal_(0.0, std if std > 0 else 1.0)


def layer_groups(model: nn.Module, max_steps: int) -> list[list[str]]:
    """Parameterised modules from the output down, split into at most ``max_steps`` groups."""
    names = [n for n, _ in parameterised_modules(model)][::-1]
    if not names:
        raise ValueError("the model has no parameters to randomise")
    k = min(max_steps, len(names))
    bounds = [round(i * len(names) / k) for i in range(k + 1)]
    return [names[bounds[i] : bounds[i + 1]] for i in range(k)]


def sanity_check(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | int | None,
    methods: Sequence[str] | Mapping[str, Explainer],
    *,
    layer: nn.Module | str | None = None,
    groups: Sequence[Sequence[str]] | None = None,
    max_steps: int = 6,
    threshold: float = 0.5,
    absolute: bool = True,
    seed: int = 0,
    **options: object,
) -> SanityResult:
    """Run the cascade. ``methods``: engine method names or {name: explainer}. A method is
    flagged when its maps still correlate >= ``threshold`` once every layer is randomised."""
    if max_steps < 1:
        raise ValueError("max_steps must be >= 1")
    x, t = prepare(model, inputs, targets)
    layer_name = resolve_layer(model, layer).name if layer is not None else None
    work = copy.deepcopy(model)
    plan = [list(g) for g in groups] if groups is not None else layer_groups(work, max_steps)
    if isinstance(methods, Mapping):
        explainers: dict[str, Explainer] = dict(methods)
        names: list[str] = []
    else:
        explainers = {}
        names = list(methods)

    def maps_of(m: nn.Module) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if names:
            res = explain(m, x, t, names, layer_name, seed=seed, **options)  # type: ignore[arg-type]
            out.update(res.maps)
        for name, fn in explainers.items():
            out[name] = fn(m, x, t).detach()
        return out

    def prep(a: torch.Tensor) -> torch.Tensor:
        a = a.float().flatten(1)
        return a.abs() if absolute else a

    original = {k: prep(v) for k, v in maps_of(work).items()}
    per_step: dict[str, list[torch.Tensor]] = {k: [] for k in original}
    labels: list[str] = []
    for step, group in enumerate(plan):
        for name in group:
            randomise_module(work.get_submodule(name), seed + 1000 * (step + 1) + zlib.crc32(name.encode()) % 997)
        labels.append(group[0] if len(group) == 1 else f"{group[0]}..{group[-1]}")
        for k, v in maps_of(work).items():
            per_step[k].append(spearman(original[k], prep(v)).float().cpu())
    per_sample = {k: torch.stack(v) for k, v in per_step.items()}
    correlations = {k: v.mean(1).tolist() for k, v in per_sample.items()}
    flagged = {k: bool(c[-1] >= threshold) for k, c in correlations.items()}
    return SanityResult(labels, correlations, per_sample, flagged, threshold)
