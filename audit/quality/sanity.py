"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018, arXiv:1810.03292).

Layers are re-initialised from the top (output) down, cumulatively, on a copy of the model; a
method whose maps still rank-correlate with the trained model's maps is flagged. A comparison with a
constant (e.g. all-zero) map has no rank correlation: it is reported as undefined and fails the check.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from audit.attribution import explain, spearman
from audit.attribution.layers import parameterised_modules, resolve_layer

from ._eval import prepare
from .spec import RANDOMISATION, Explainer, MetricSpec


Status = Literal["changed", "unchanged", "undefined"]
# A map is constant when its spread is at most this fraction of its largest magnitude (0 for all-zero).
CONSTANT_RTOL = 1e-6


@dataclass
class SanityResult:
    """Per method: mean Spearman correlation with the trained model's maps after each step.

    A comparison where either map (trained or randomised) is constant has no rank correlation: it is
    NaN in ``per_sample`` and left out of the step mean (NaN when every sample is undefined). The
    verdict is taken after full randomisation, as the flag always was: when a trained map is constant,
    or a fully randomised map is, the method's ``status`` is ``"undefined"``, a failure (``flagged``),
    never ``"changed"``. Constant maps at intermediate steps only leave NaN in the curve.
    ``status``: ``"changed"`` (passes: the maps decorrelate below ``threshold``), ``"unchanged"``
    (flagged: they still correlate) or ``"undefined"``.
    """

    steps: list[str]  # the layer group randomised at each step (cumulative, top first)
    correlations: dict[str, list[float]]
    per_sample: dict[str, torch.Tensor]  # [steps, B], NaN where undefined
    flagged: dict[str, bool]
    threshold: float
    spec: MetricSpec = field(default=RANDOMISATION)
    status: dict[str, Status] = field(default_factory=dict)
    undefined: dict[str, torch.Tensor] = field(default_factory=dict)  # [steps, B] bool
    constant_original: dict[str, list[int]] = field(default_factory=dict)  # samples whose trained map is constant

    def reason(self, method: str) -> str:
        """One line saying why a method passed or failed."""
        status = self.status[method]
        last = self.correlations[method][-1] if self.correlations[method] else float("nan")
        if status == "undefined":
            if self.constant_original.get(method):
                n, where = len(self.constant_original[method]), "the trained model's map is constant"
            else:
                n, where = int(self.undefined[method][-1].sum()), "the fully randomised model's map is constant"
            total = self.undefined[method].shape[1]
            return (f"undefined: {where} for {n} of {total} sample(s), so no rank correlation exists; "
                    "treated as a failure")
        if status == "unchanged":
            return f"unchanged: rank correlation {last:.3f} >= {self.threshold} after full randomisation"
        return f"changed: rank correlation {last:.3f} < {self.threshold} after full randomisation"


def constant_rows(a: torch.Tensor, rtol: float = CONSTANT_RTOL) -> torch.Tensor:
    """[rows, ...] -> bool [rows]: True where a row is constant (all-zero included) or not finite."""
    flat = a.detach().double().flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    scale = flat.abs().amax(dim=1)
    return ~finite | (spread <= rtol * scale)


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
    original_constant = {k: constant_rows(v).cpu() for k, v in original.items()}
    per_step: dict[str, list[torch.Tensor]] = {k: [] for k in original}
    undefined_steps: dict[str, list[torch.Tensor]] = {k: [] for k in original}
    labels: list[str] = []
    modules = dict(work.named_modules())  # by name: ScriptModules have no get_submodule
    for step, group in enumerate(plan):
        for name in group:
            if name not in modules:
                raise ValueError(f"the model has no module {name!r} to randomise")
            randomise_module(modules[name], seed + 1000 * (step + 1) + zlib.crc32(name.encode()) % 997)
        labels.append(group[0] if len(group) == 1 else f"{group[0]}..{group[-1]}")
        for k, v in maps_of(work).items():
            r = prep(v)
            # spearman() returns 0 for a constant row, which would read as "changed": keep it undefined.
            undefined = original_constant[k] | constant_rows(r).cpu()
            rho = spearman(original[k], r).float().cpu()
            per_step[k].append(torch.where(undefined, torch.full_like(rho, float("nan")), rho))
            undefined_steps[k].append(undefined)
    per_sample = {k: torch.stack(v) for k, v in per_step.items()}
    undefined_mask = {k: torch.stack(v) for k, v in undefined_steps.items()}
    correlations = {k: _nanmean_rows(v) for k, v in per_sample.items()}
    status: dict[str, Status] = {}
    for k, c in correlations.items():
        if bool(original_constant[k].any()) or bool(undefined_mask[k][-1].any()):
            status[k] = "undefined"
        else:
            status[k] = "unchanged" if c[-1] >= threshold else "changed"
    flagged = {k: s != "changed" for k, s in status.items()}
    constant_original = {k: [int(i) for i in v.nonzero().flatten()] for k, v in original_constant.items()}
    return SanityResult(labels, correlations, per_sample, flagged, threshold, status=status,
                        undefined=undefined_mask, constant_original=constant_original)


def _nanmean_rows(v: torch.Tensor) -> list[float]:
    """Mean over samples of each step, ignoring NaN (undefined) entries; NaN when all are undefined."""
    ok = ~torch.isnan(v)
    total = torch.where(ok, v, torch.zeros_like(v)).sum(dim=1)
    n = ok.sum(dim=1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan"))).tolist()
